"""A small electricity model shared by the central tests: a house, two entrances, four flats."""

import numpy as np

from central.model import from_lists

GROUPS = [
    dict(group_id="H1", parent_id="", level="house", resource="electricity", input_meter_id="HM", loss_pct="1"),
    dict(group_id="E1", parent_id="H1", level="entrance", resource="electricity", input_meter_id="EM1",
         loss_pct="0"),
    dict(group_id="E2", parent_id="H1", level="entrance", resource="electricity", input_meter_id="EM2",
         loss_pct="0"),
]
METERS = [dict(meter_id="HM", group_id="", resource="electricity"),
          dict(meter_id="EM1", group_id="H1", resource="electricity"),
          dict(meter_id="EM2", group_id="H1", resource="electricity")] + [
    dict(meter_id="f%d" % i, group_id="E1" if i < 2 else "E2", resource="electricity") for i in range(4)]

DAY = 20473  # 2026-01-20


def model():
    return from_lists(GROUPS, METERS)


def put_constant_day(store, per_meter, day=DAY):
    """Store ``per_meter[meter_id]`` kWh in every hour of ``day``."""
    index = store.load_model().meter_index()
    rows = np.repeat([index[m] for m in per_meter], 24)
    hours = np.tile(np.arange(day * 24, day * 24 + 24), len(per_meter))
    values = np.repeat(list(per_meter.values()), 24)
    return store.put_hourly(rows, hours, values)
