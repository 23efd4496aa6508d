"""The detection benchmark on the appliance-built district, through the CSV interface and the CLI."""

from types import SimpleNamespace

import numpy as np

from central import appliances
from central.bench import detect_csv


def test_the_appliance_district_is_whole_and_its_faults_are_where_they_say():
    d = appliances.district(flats=300, history_days=28, test_days=5, seed=4)
    ids = [m["meter_id"] for m in d.meters]
    assert len(set(ids)) == len(ids)
    groups = {g["group_id"] for g in d.groups}
    assert all(m["group_id"] in groups or m["group_id"] == "" for m in d.meters)
    assert 0.005 < np.isnan(d.values).mean() < 0.05  # scattered gaps and house outages
    assert np.nanmin(d.values) >= 0
    row = {m: k for k, m in enumerate(ids)}
    for f in d.faults:
        assert f["began"] <= f["onset"] <= f["began"] + 1 and f["group_id"] in groups
        if f["kind"] == "stopped":
            k = (f["onset"] - d.day0) * 24
            assert np.nansum(d.values[row[f["point_id"]], k:]) == 0


def test_detect_csv_scores_every_kind_of_fault_through_the_cli():
    figures = detect_csv(SimpleNamespace(quick=True, seed=1))
    for kind in ("theft", "stopped", "slow", "unmetered", "leak"):
        assert figures["%s_n" % kind] > 0 and figures["%s_recall" % kind] is not None
    assert figures["leak_recall"] >= 0.9 and figures["theft_recall"] >= 0.9
    assert figures["false_alerts_per_1000_meters_month"] <= 5
    assert figures["import_s"] > 0 and figures["meters"] > 1000
