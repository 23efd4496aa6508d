"""Benchmarks of central: ``detect`` (how well the analytics find injected faults) and
``central`` (import and balance 1,000,000 meters × 7 days against a raw bulk load)."""

import time

import numpy as np

from central import synth
from central.analytics import HISTORY_DAYS, find_alerts
from central.balance import Window
from central.model import from_lists
from central.store import HOURS

# Which alert kinds count as finding which injected fault.
FOUND_BY = {"theft": ("suspect",), "slow": ("suspect",), "stopped": ("stopped_meter", "suspect"),
            "unmetered": ("imbalance",), "leak": ("leak",)}
MONTH_DAYS = 30
LEAK_DEADLINE_DAYS = 2  # the alerts on the leak's first day or the next: within 48 h of its start


def detect(args):
    """Run the analytics on every test day of a synthetic district and score them against the truth."""
    quick = getattr(args, "quick", False)
    flats = 2000 if quick else 10000
    test_days = 14 if quick else 28
    t0 = time.perf_counter()
    d = synth.district(flats=flats, history_days=HISTORY_DAYS, test_days=test_days, seed=getattr(args, "seed", 1) or 1)
    t_gen = time.perf_counter() - t0
    model = from_lists(d.groups, d.meters)
    quality = d.quality()
    days = {}
    t0 = time.perf_counter()
    for k in range(d.history_days, d.ndays):
        cols = slice((k - HISTORY_DAYS) * HOURS, (k + 1) * HOURS)
        window = Window(model, d.day0 + k - HISTORY_DAYS, d.values[:, cols], quality[:, cols])
        day = d.day0 + k
        events = [e for e in d.events if day * 86400 <= e[1] < (day + 1) * 86400]
        days[day] = find_alerts(model, window, events)
    t_alerts = time.perf_counter() - t0
    figures = score(d, days)
    figures.update(meters=len(d.meters), flats=flats, test_days=test_days, generate_s=round(t_gen, 2),
                   alerts_s_per_day=round(t_alerts / test_days, 3))
    return figures


def score(d, days):
    """Per fault kind: recall, precision, top-1/top-3 the next day, within 3 days, detection delay."""
    by_point = {}
    for f in d.faults:
        by_point.setdefault(f["point_id"], []).append(f)
    faulty_groups = {}
    for f in d.faults:
        if f["kind"] != "leak":
            faulty_groups.setdefault(f["group_id"], []).append(f)
    suspects = {}  # (day, group) -> ranked meter ids
    found = {}  # (kind, point) -> first day alerted
    for day, alerts in days.items():
        for a in alerts:
            if a["kind"] == "suspect":
                suspects.setdefault((day, a["group_id"]), []).append(a["point_id"])
            found.setdefault((a["kind"], a["point_id"]), day)
    out = {}
    n_meters = len(d.meters)
    for kind in ("theft", "stopped", "slow", "unmetered", "leak"):
        faults = [f for f in d.faults if f["kind"] == kind]
        if not faults:
            continue
        delays, top1, top3, within3 = [], 0, 0, 0
        for f in faults:
            o = f["onset"]
            ranked = lambda day: suspects.get((day, f["group_id"]), [])  # noqa: E731
            if kind in ("theft", "slow", "stopped"):
                top1 += ranked(o)[:1] == [f["point_id"]]
                top3 += f["point_id"] in ranked(o)[:3]
                within3 += any(f["point_id"] in ranked(o + k)[:3] for k in range(3))
            first = [day for day in sorted(days) if day >= o and _found(kind, f, days[day], ranked(day))]
            if first and (kind != "leak" or first[0] - o < LEAK_DEADLINE_DAYS):
                delays.append(first[0] - o + 1)  # data of day o are judged the next morning
        n = len(faults)
        out["%s_n" % kind] = n
        out["%s_recall" % kind] = round(len(delays) / n, 4)
        if kind in ("theft", "slow", "stopped"):
            out["%s_top1_next_day" % kind] = round(top1 / n, 4)
            out["%s_top3_next_day" % kind] = round(top3 / n, 4)
            out["%s_top3_within_3_days" % kind] = round(within3 / n, 4)
        out["%s_delay_days_median" % kind] = float(np.median(delays)) if delays else None
        out["%s_delay_days_max" % kind] = max(delays) if delays else None
    false = 0
    for kind in ("imbalance", "suspect", "stopped_meter", "leak", "tamper"):
        alerted = {(a["point_id"], a["group_id"], day) for day, alerts in days.items() for a in alerts
                   if a["kind"] == kind}
        true_points, points, excused = set(), set(), set()
        for p, g, day in alerted:
            points.add(p)
            if _true_alert(kind, p, day, by_point, faulty_groups):
                true_points.add(p)
            elif kind == "suspect" and any(f["onset"] <= day for f in faulty_groups.get(g, [])):
                excused.add(p)  # ranked below the culprit in a group that does have a fault
        out["%s_precision" % kind] = round(len(true_points) / len(points), 4) if points else None
        false += len(points - true_points - excused)
    # A false alert names a point (or group) where nothing was wrong; the other members
    # listed after the culprit of a faulty group are not counted.
    out["false_alerts_per_1000_meters_month"] = round(false / n_meters * 1000 * MONTH_DAYS / len(days), 3)
    return out


def _found(kind, f, alerts, ranked):
    if kind in ("theft", "slow", "stopped") and f["point_id"] in ranked[:3]:
        return True
    return any(a["kind"] in FOUND_BY[kind] and a["point_id"] == f["point_id"] for a in alerts)


def _true_alert(kind, point, day, by_point, faulty_groups):
    if kind == "imbalance":
        return any(f["onset"] <= day for f in faulty_groups.get(point, []))
    wanted = {"suspect": ("theft", "slow", "stopped"), "stopped_meter": ("stopped", "theft", "slow"),
              "leak": ("leak",), "tamper": ("theft",)}[kind]
    return any(f["kind"] in wanted and f["onset"] <= day + (kind == "tamper") for f in by_point.get(point, []))


BENCHMARKS = {"detect": detect}
