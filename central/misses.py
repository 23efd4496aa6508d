"""``python -m central.misses [--seed N] [--quick]``: the detection benchmark's misses, one by one.

Every theft or faulty meter (``central/bench.py`` detect, same district and alerts) whose
point was not among its group's top 3 suspects the day its fault began: how it was
made, its group's size, its rank on each of its first 3 days (0: not listed), the other
faults of its group with their onsets relative to its own, and each day whether the
group's imbalance rose (with the rise in deviations from the alert) and who was listed
instead, with their scores. This is where the next change to the analytics should start.
"""

import argparse
import re

from central.bench import culprit_ranks, detect_run, ranked_suspects

CULPRIT_KINDS = ("theft", "slow", "stopped")


def misses(d, days):
    """Lines describing each next-day miss, then a count per way of failing."""
    suspects = ranked_suspects(days)
    size = {}
    for m in d.meters:
        size[m["group_id"]] = size.get(m["group_id"], 0) + 1
    lines = []
    for f in d.faults:
        ranks = culprit_ranks(f, suspects)
        if f["kind"] not in CULPRIT_KINDS or 0 < ranks[0] <= 3:
            continue
        others = ["%s %s %+d d" % (o["how"], o["point_id"], o["onset"] - f["onset"]) for o in d.faults
                  if o["group_id"] == f["group_id"] and o is not f]
        lines.append("%s %s in %s (%d members): ranks %s; other faults: %s" % (
            f["how"], f["point_id"], f["group_id"], size.get(f["group_id"], 0), ranks, ", ".join(others) or "none"))
        for k in range(3):
            day = f["onset"] + k
            rise = [a["detail"] for a in days.get(day, []) if a["kind"] == "imbalance" and a["group_id"] == f["group_id"]]
            sigma = re.search(r"rise (-?[\d.]+) sigma", rise[0]) if rise else None
            listed = [(a["point_id"], a["score"]) for a in days.get(day, [])
                      if a["kind"] == "suspect" and a["group_id"] == f["group_id"]]
            lines.append("  day +%d: %s; listed %s" % (
                k, "risen %s sigma" % sigma.group(1) if sigma else "not risen", listed))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m central.misses", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    d, days, _, _ = detect_run(args.seed, args.quick)
    print("\n".join(misses(d, days)))


if __name__ == "__main__":
    main()
