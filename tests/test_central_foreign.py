"""A district shaped unlike central/synth.py, through the CSV interface only: is the culprit named?

Outside tools judge the analytics on districts they generate themselves, so this one
shares nothing with the synthetic district but the CSV formats of docs/central.md: a
street of two houses whose flats are members of the house directly (no entrances),
homes and offices with their own day shapes, gamma-distributed hourly use with a
day-to-day level, 10 Wh resolution, fixed 1.5 % losses and scattered lost hours.
"""

import csv
import datetime as dt
import json

import numpy as np
import pytest

from balans.cli import main

DAYS = 29  # 28 days of history (central.analytics.HISTORY_DAYS) and the day judged
START = dt.date(2026, 3, 2)
HOME = np.array([3, 3, 3, 3, 3, 4, 6, 8, 6, 4, 4, 4, 4, 4, 4, 5, 6, 8, 10, 10, 9, 7, 5, 4], float)
OFFICE = np.array([1, 1, 1, 1, 1, 1, 2, 6, 10, 10, 10, 9, 8, 10, 10, 10, 9, 6, 3, 2, 1, 1, 1, 1], float)
HOUSES = {"A": 12, "B": 40}
LOSS = 0.015


def foreign_district(seed, culprit, how):
    """groups, meters and hourly readings; on the last day ``culprit``'s meter registers
    half its use (``how`` "share": a shunt) or at most its usual lowest third ("cap": a magnet)."""
    rng = np.random.default_rng(seed)
    groups = [dict(group_id="S", parent_id="", level="street", resource="electricity", input_meter_id="SM",
                   loss_pct="1.5")]
    meters = [dict(meter_id="SM", group_id="", resource="electricity")]
    flats = []
    for house, n in HOUSES.items():
        groups.append(dict(group_id=house, parent_id="S", level="house", resource="electricity",
                           input_meter_id=house + "M", loss_pct="1.5"))
        meters.append(dict(meter_id=house + "M", group_id="S", resource="electricity"))
        flats += [(house, "%s-%02d" % (house, i)) for i in range(n)]
    meters += [dict(meter_id=m, group_id=h, resource="electricity") for h, m in flats]
    hours = DAYS * 24
    weekday = np.repeat([(START + dt.timedelta(days=k)).weekday() for k in range(DAYS)], 24)
    true = {}
    for _, m in flats:
        office = rng.random() < 0.3
        shape = (OFFICE if office else HOME) / (OFFICE if office else HOME).mean()
        level = rng.uniform(0.15, 0.6) * np.repeat(rng.gamma(20, 1 / 20, DAYS), 24)  # day-to-day level
        if office:
            level = level * np.where(weekday >= 5, 0.3, 1.0)
        true[m] = np.tile(shape, DAYS) * level * rng.gamma(4, 1 / 4, hours)
    reported = {m: v.copy() for m, v in true.items()}
    if how == "share":
        reported[culprit][-24:] *= 0.5
    elif how == "cap":
        reported[culprit][-24:] = np.minimum(reported[culprit][-24:], np.quantile(true[culprit][:-24], 1 / 3))
    for house in HOUSES:
        members = sum(v for (h, m), v in zip(flats, true.values()) if h == house)
        true[house + "M"] = members * (1 + LOSS)
        reported[house + "M"] = true[house + "M"]
    reported["SM"] = (reported["AM"] + reported["BM"]) * (1 + LOSS)
    readings = []
    for m, v in reported.items():
        lost = rng.random(hours) < 0.01
        for k in np.nonzero(~lost)[0]:
            day = START + dt.timedelta(days=int(k // 24))
            readings.append((m, "%sT%02d:00:00Z" % (day.isoformat(), k % 24), "%.2f" % v[k]))
    return groups, meters, readings


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[r[k] for k in header] for r in rows] if rows and isinstance(rows[0], dict) else rows)


@pytest.mark.parametrize("seed, culprit, how", [(11, "B-07", "share"), (12, "B-31", "cap")])
def test_the_culprit_of_a_foreign_district_is_named_through_the_csv_interface(tmp_path, capsys, seed, culprit, how):
    groups, meters, readings = foreign_district(seed, culprit, how)
    write(tmp_path / "groups.csv", ["group_id", "parent_id", "level", "resource", "input_meter_id", "loss_pct"],
          groups)
    write(tmp_path / "meters.csv", ["meter_id", "group_id", "resource"], meters)
    write(tmp_path / "readings.csv", ["meter_id", "hour_start", "value"], readings)
    base = ["central", "--db", str(tmp_path / "balans.db")]
    assert main(base + ["import", "--groups", str(tmp_path / "groups.csv"),
                        "--meters", str(tmp_path / "meters.csv")]) == 0
    assert main(base + ["import", "--readings", str(tmp_path / "readings.csv")]) == 0
    capsys.readouterr()
    last = (START + dt.timedelta(days=DAYS - 1)).isoformat()
    assert main(base + ["alerts", "--day", last, "--format", "json"]) == 0
    alerts = json.loads(capsys.readouterr().out)["alerts"]
    assert any(a["kind"] == "imbalance" and a["group_id"] == "B" for a in alerts)
    suspects = [a["point_id"] for a in alerts if a["kind"] == "suspect" and a["group_id"] == "B"]
    assert culprit in suspects[:3]
    assert not [a for a in alerts if a["group_id"] == "A" and a["kind"] in ("imbalance", "suspect")]
