"""The store (SQLite here; PostgreSQL in test_central_postgres.py) and the balance engine."""

import numpy as np
import pytest

from central import balance
from central.store import ESTIMATED, INTERPOLATED, MEASURED, MISSING, open_store
from tests import central_fixtures as fx


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "balans.db"))
    s.save_model(fx.model())
    yield s
    s.close()


def test_model_round_trip_keeps_meter_rows(store):
    m = store.load_model()
    assert list(m.meters) == [x["meter_id"] for x in fx.METERS]
    store.save_model(fx.model())  # saving again must not move any meter
    assert store.load_model().meter_index() == m.meter_index()
    assert store.load_model().groups["E2"].inputs == ("EM2",)


def test_hourly_values_merge_into_meter_days(store):
    index = store.load_model().meter_index()
    day = fx.DAY
    store.put_hourly([index["f0"]] * 2, [day * 24 + 3, day * 24 + 4], [1.5, 2.5])
    store.put_hourly([index["f0"]], [day * 24 + 5], [0.25])
    vals, qual = store.load_days(day, 1, len(index))
    row = index["f0"]
    assert vals[row, 3:6].tolist() == [1.5, 2.5, 0.25]
    assert np.isnan(vals[row, 0]) and qual[row, 0] == MISSING
    assert qual[row, 3:6].tolist() == [MEASURED] * 3
    assert store.take_stale() == [day] and store.take_stale() == []


def test_balance_of_a_house(store):
    fx.put_constant_day(store, {"HM": 10.0, "EM1": 4.0, "EM2": 5.0, "f0": 2.0, "f1": 1.5, "f2": 2.5, "f3": 2.5})
    rows = {r["group_id"]: r for r in balance.compute(store, "2026-01-20")}
    e1, e2, h1 = rows["E1"], rows["E2"], rows["H1"]
    own = 2 * 0.002 * 24  # two electricity meters at 2 W for a day
    assert e1["input"] == pytest.approx(96.0) and e1["members"] == pytest.approx(84.0)
    assert e1["equipment"] == pytest.approx(own)
    assert e1["imbalance"] == pytest.approx(96 - 84 - own)
    assert e1["imbalance_pct"] == pytest.approx((96 - 84 - own) / 96 * 100)
    assert e1["status"] == "alarm" and e2["status"] == "ok"
    assert h1["losses"] == pytest.approx(0.01 * 240)
    assert h1["imbalance"] == pytest.approx(240 - 216 - 2.4 - own)
    assert h1["completeness"] == 1.0
    hourly = balance.compute(store, "2026-01-20", group="E1", hourly=True)
    assert len(hourly) == 24 and hourly[5]["period"] == "2026-01-20T05:00:00Z"
    assert sum(r["imbalance"] for r in hourly) == pytest.approx(e1["imbalance"])


def test_quadratic_losses_grow_with_the_square_of_the_load(store):
    m = store.load_model()
    m.groups["E2"].loss_model, m.groups["E2"].loss_pct = "quadratic", 10.0
    store.save_model(m)
    index = m.meter_index()
    hours = np.arange(fx.DAY * 24, fx.DAY * 24 + 24)
    load = np.where(np.arange(24) < 12, 1.0, 3.0)  # mean 2
    store.put_hourly(np.full(24, index["EM2"]), hours, load)
    rows = balance.compute(store, fx.DAY, group="E2", hourly=True)
    assert rows[0]["losses"] == pytest.approx(0.1 * 1 / 2)
    assert rows[20]["losses"] == pytest.approx(0.1 * 9 / 2)


def test_gaps_are_estimated_flagged_and_lower_completeness(store):
    index = store.load_model().meter_index()
    for day in range(fx.DAY - 7, fx.DAY + 1):
        fx.put_constant_day(store, {"EM1": 4.0, "f0": 2.0, "f1": 2.0}, day)
    # f0: one lost hour (interpolated) and a 5-hour gap (from like days), on the last day
    lost = [3, 10, 11, 12, 13, 14]
    with store.transaction():
        vals, qual = store.load_day(fx.DAY, np.array([index["f0"]]))
        vals[0, lost], qual[0, lost] = np.nan, MISSING
        store.put_day_rows(fx.DAY, [index["f0"]], vals, qual)
    window = balance.Window.load(store, fx.DAY - 7, 8)
    q = window.quality[index["f0"], 7 * 24:]
    assert q[3] == INTERPOLATED and set(q[10:15]) == {ESTIMATED} and q[0] == MEASURED
    assert window.values[index["f0"], 7 * 24 + 12] == pytest.approx(2.0)
    assert window.raw_quality[index["f0"], 7 * 24 + 3] == MISSING  # the store still says missing
    e1 = {r["group_id"]: r for r in balance.compute(store, fx.DAY)}["E1"]
    assert e1["completeness"] == pytest.approx(1 - 5 / (3 * 24))
    assert e1["imbalance"] == pytest.approx(-2 * 0.002 * 24)


def test_a_gap_nothing_can_estimate_is_incomplete_not_theft(store):
    fx.put_constant_day(store, {"EM1": 4.0, "f0": 2.0})  # f1 never reported
    e1 = {r["group_id"]: r for r in balance.compute(store, fx.DAY)}["E1"]
    assert e1["status"] == "incomplete"
