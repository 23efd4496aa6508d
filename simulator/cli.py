"""``balans simulate``: run a scenario of the simulated mesh with the real firmware and print its figures.

With ``--seeds N`` it runs seeds S..S+N-1 (``--jobs`` at a time) and prints a
markdown table of each figure's mean, worst and best over the seeds, with the
issue's targets: the table of docs/benchmarks.md.
"""

import json
import multiprocessing

from simulator.faults import FAULTS
from simulator.scenarios import SCENARIOS

# figure -> (target, True if higher is better), the floors of issue 4
TARGETS = {
    "delivery_ratio": (0.995, True),
    "daily_completeness": (0.999, True),
    "broadcast_p95_s": (10.0, False),
    "broadcast_reached": (0.999, True),
    "broadcast_reached_40s": (0.999, True),  # in time for a tagged command (metrics.BROADCAST_IN_TIME_S)
    "battery_years_busiest": (10.0, True),
    "duty_cycle_max": (0.10, False),
    "join_time_s": (1800.0, False),
    "wall_s": (120.0, False),
}


NOT_TABULATED = ("seed", "nodes", "days", "fault_at_s", "fault_victim")  # what a run is, not how it went


def configure(parser):
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="block", help="layout (default block)")
    parser.add_argument("--nodes", type=int, default=240, help="radio modules (default 240)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed, the same run")
    parser.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed and tabulate")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run in parallel (processes)")
    parser.add_argument("--fault", choices=FAULTS, help="strike this fault halfway through the run (faults.py)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object, or one per seed)")


def _one(job):
    from simulator.network import simulate

    scenario, nodes, days, seed, fault = job
    return simulate(scenario, nodes, days, seed, fault=fault)


def _runs(jobs, processes):
    if processes == 1 or len(jobs) == 1:
        for job in jobs:
            yield _one(job)
        return
    with multiprocessing.Pool(min(processes, len(jobs))) as pool:
        yield from pool.imap_unordered(_one, jobs)


def run(args):
    if args.nodes < 1 or args.days <= 0 or args.seeds < 1 or args.jobs < 1:
        raise ValueError("--nodes, --seeds and --jobs must be >= 1 and --days > 0")
    jobs = [(args.scenario, args.nodes, args.days, args.seed + i, args.fault) for i in range(args.seeds)]
    results = []
    for figures in _runs(jobs, args.jobs):
        results.append(figures)
        if args.json:  # one line per seed as it finishes: a long sweep can be read while it runs
            print(json.dumps(figures), flush=True)
    if args.json:
        return 0
    if len(results) > 1:
        print(table(results))
        return 0
    figures = results[0]
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print("  %-*s  %s" % (width, key, "%.6g" % value if isinstance(value, float) else value))
    return 0


def table(results):
    """Markdown: each numeric figure's mean, minimum and maximum over the runs, its target and how often met."""
    lines = ["| figure | mean | min | max | target | met in |", "|---|---|---|---|---|---|"]
    for key, value in results[0].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or key in NOT_TABULATED:
            continue
        values = [r.get(key) for r in results]
        numbers = [v for v in values if v is not None]
        target, higher = TARGETS.get(key, (None, True))
        goal = met = ""
        if target is not None:
            goal = "%s %g" % (">=" if higher else "<=", target)
            met = "%d/%d" % (sum(1 for v in numbers if (v >= target if higher else v <= target)), len(values))
        if not numbers:
            lines.append("| %s | none | | | %s | %s |" % (key, goal, met))
            continue
        lines.append("| %s | %.4g | %.4g | %.4g | %s | %s |" % (
            key, sum(numbers) / len(numbers), min(numbers), max(numbers), goal, met))
    return "\n".join(lines)


COMMANDS = [("simulate", "simulate the radio mesh with the real firmware and print its figures", configure, run)]
