"""A synthetic district with known faults, for the detection benchmark, tests and demos.

Flats in entrances, entrances in houses, houses in streets, one district; every flat
has an electricity and a water meter; each level's input meter sees the true flows of
its members plus its technical losses (growing with the square of the load), the
members' meters' own consumption and any hidden load. Meters err within their class
(class 1 flats, 0.5S inputs) and count whole pulses (1 Wh, 1 L); 1 % of meter-hours are
lost in gaps of 1–48 h.

Faults start on a random day after the history period and persist: thefts (magnet
capping the load, a bypass or shunt taking a share of it, a constant subtraction),
stopped and slowing meters, unmetered loads on an entrance, water leaks of 1–10 L/h.
``District.faults`` is the ground truth the benchmark scores against.
"""

import csv
import os

import numpy as np

from central.balance import day_text
from central.store import HOURS, MEASURED, MISSING

# Household electricity: a winter weekday shape (night, morning peak, day, evening peak),
# scaled to the mean; annual use of a flat 1,500–5,000 kWh.
SHAPE = np.array([0.45, 0.4, 0.38, 0.37, 0.38, 0.45, 0.8, 1.2, 1.15, 0.9, 0.8, 0.8,
                  0.85, 0.8, 0.75, 0.8, 0.95, 1.3, 1.65, 1.8, 1.75, 1.55, 1.15, 0.75])
SHAPE = SHAPE / SHAPE.mean()
NOISE_SIGMA, NOISE_RHO = 0.5, 0.5  # hourly lognormal AR(1): an hourly CV near 0.5–1 as in smart-meter data
# Water: hourly rates of draw-offs (per flat), about 10 L each, ~300 L a day.
WATER_RATE = np.array([0.05, 0.03, 0.02, 0.02, 0.03, 0.2, 1.2, 2.0, 1.5, 0.8, 0.6, 0.6,
                       0.8, 0.6, 0.5, 0.5, 0.7, 1.2, 1.6, 1.8, 1.8, 1.5, 0.9, 0.3])
LEVEL_LOSS_PCT = {"entrance": 1.0, "house": 1.5, "street": 3.0, "district": 2.0}
OWN_KWH = 0.002  # 2 W per electricity meter, taken before it
GAP_SHARE, GAP_MEAN_HOURS = 0.01, 6
EPOCH_DAY = 20458  # 2026-01-05, a Monday


class District:
    """groups/meters as CSV-style dicts, hourly ``values`` [meters, hours] (NaN in gaps), events, faults."""

    def __init__(self, groups, meters, values, events, faults, day0, history_days):
        self.groups, self.meters, self.values = groups, meters, values
        self.events, self.faults = events, faults
        self.day0, self.history_days = day0, history_days
        self.ndays = values.shape[1] // HOURS

    def quality(self):
        return np.where(np.isnan(self.values), MISSING, MEASURED).astype(np.uint8)

    def store_into(self, store):
        """Save the model and every meter-day into ``store``."""
        from central.model import from_lists

        store.save_model(from_lists(self.groups, self.meters))
        rows = np.arange(len(self.meters))
        quality = self.quality()
        with store.transaction():
            for k in range(self.ndays):
                cols = slice(k * HOURS, (k + 1) * HOURS)
                store.put_day_rows(self.day0 + k, rows, self.values[:, cols], quality[:, cols])
            store.add_events(self.events)

    def write_csv(self, folder):
        """groups.csv, meters.csv, readings.csv, events.csv as ``balans central import`` reads them."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "groups.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, ["group_id", "parent_id", "level", "resource", "input_meter_id", "loss_pct",
                                   "loss_model"])
            w.writeheader()
            w.writerows(self.groups)
        with open(os.path.join(folder, "meters.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, ["meter_id", "group_id", "resource"])
            w.writeheader()
            w.writerows(self.meters)
        hours = ["%sT%02d:00:00Z" % (day_text(self.day0 + k // HOURS), k % HOURS) for k in range(self.values.shape[1])]
        with open(os.path.join(folder, "readings.csv"), "w", newline="") as f:
            f.write("meter_id,hour_start,value\n")
            for m, row in zip(self.meters, self.values):
                mid = m["meter_id"]
                f.writelines("%s,%s,%.6g\n" % (mid, h, v) for h, v in zip(hours, row) if v == v)
        with open(os.path.join(folder, "events.csv"), "w", newline="") as f:
            f.write("meter_id,ts,event\n")
            for mid, ts, name, _ in self.events:
                f.write("%s,%sT%02d:%02d:00Z,%s\n" % (mid, day_text(ts // 86400), ts % 86400 // 3600,
                                                      ts % 3600 // 60, name))


def district(flats=10000, per_entrance=25, entrances_per_house=4, houses_per_street=10,
             history_days=28, test_days=28, seed=1, theft_share=0.01, stopped_share=0.002,
             slow_share=0.002, unmetered_share=0.025, leak_share=0.02, gap_share=GAP_SHARE):
    """Generate a District; shares are of flats (unmetered: of entrances)."""
    rng = np.random.default_rng(seed)
    ndays = history_days + test_days
    T = ndays * HOURS
    n_ent = -(-flats // per_entrance)
    n_house = -(-n_ent // entrances_per_house)
    n_street = -(-n_house // houses_per_street)
    ent_of_flat = np.arange(flats) // per_entrance
    house_of_ent = np.arange(n_ent) // entrances_per_house
    street_of_house = np.arange(n_house) // houses_per_street

    groups, meters = [], []

    def group(gid, parent, level, resource, inp):
        loss = LEVEL_LOSS_PCT[level] if resource == "electricity" else 1.0
        groups.append(dict(group_id=gid, parent_id=parent, level=level, resource=resource, input_meter_id=inp,
                           loss_pct="%g" % loss, loss_model="quadratic" if resource == "electricity" else "fixed"))

    group("D1", "", "district", "electricity", "DI")
    meters.append(dict(meter_id="DI", group_id="", resource="electricity"))
    for s in range(n_street):
        group("S%d" % s, "D1", "street", "electricity", "SI%d" % s)
        meters.append(dict(meter_id="SI%d" % s, group_id="D1", resource="electricity"))
    for h in range(n_house):
        group("H%d" % h, "S%d" % street_of_house[h], "house", "electricity", "HI%d" % h)
        meters.append(dict(meter_id="HI%d" % h, group_id="S%d" % street_of_house[h], resource="electricity"))
        group("W%d" % h, "", "house", "water", "WI%d" % h)
        meters.append(dict(meter_id="WI%d" % h, group_id="", resource="water"))
    for e in range(n_ent):
        group("E%d" % e, "H%d" % house_of_ent[e], "entrance", "electricity", "EI%d" % e)
        meters.append(dict(meter_id="EI%d" % e, group_id="H%d" % house_of_ent[e], resource="electricity"))
    first_flat = len(meters)
    for i in range(flats):
        meters.append(dict(meter_id="e%d" % i, group_id="E%d" % ent_of_flat[i], resource="electricity"))
    for i in range(flats):
        meters.append(dict(meter_id="w%d" % i, group_id="W%d" % house_of_ent[ent_of_flat[i]], resource="water"))
    row = {m["meter_id"]: k for k, m in enumerate(meters)}

    # True electricity use of each flat.
    mean_kwh_h = rng.uniform(1500, 5000, flats) / 8760
    shift = rng.integers(-1, 2, flats)
    hour = np.arange(T) % HOURS
    weekday = (EPOCH_DAY + np.arange(T) // HOURS + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    shape = SHAPE[(hour[None, :] + shift[:, None]) % HOURS] * np.where(weekday >= 5, 1.1, 1.0)[None, :]
    z = np.empty((flats, T))
    z[:, 0] = rng.standard_normal(flats)
    eps = rng.standard_normal((flats, T))
    for t in range(1, T):
        z[:, t] = NOISE_RHO * z[:, t - 1] + np.sqrt(1 - NOISE_RHO ** 2) * eps[:, t]
    true_e = mean_kwh_h[:, None] * shape * np.exp(NOISE_SIGMA * z - NOISE_SIGMA ** 2 / 2)
    # Vacancies: 1 % of flats empty for 4–10 days (a fridge left on); legitimate, never an alert.
    for i in rng.choice(flats, flats // 100, replace=False):
        start = rng.integers(0, ndays - 4) * HOURS
        true_e[i, start:start + rng.integers(4, 11) * HOURS] = 0.04

    # True water use: draw-offs of ~10 L.
    draws = rng.poisson(WATER_RATE[hour][None, :] * rng.uniform(0.5, 1.5, flats)[:, None])
    true_w = draws * rng.lognormal(np.log(0.008), 0.5, (flats, T))

    reported_e = true_e.copy()
    hidden = np.zeros((n_ent, T))
    events, faults = [], []
    onset_of = {}

    def onset():
        return int(rng.integers(history_days, ndays - 3))

    candidates = rng.permutation(flats)
    take = iter(candidates)
    kinds = ["magnet", "bypass", "shunt", "subtract"]
    for n in range(int(flats * theft_share)):
        i, d = next(take), onset()
        kind = kinds[n % len(kinds)]
        x = true_e[i, d * HOURS:]
        if kind == "magnet":  # the magnet saturates the transformer: the meter caps out
            cap = np.quantile(true_e[i, :history_days * HOURS], rng.uniform(0.2, 0.5))
            reported_e[i, d * HOURS:] = np.minimum(x, cap)
            if rng.random() < 0.5:
                events.append(("e%d" % i, (EPOCH_DAY + d) * 86400 + 3600 * int(rng.integers(0, 24)), "magnet", 0))
        elif kind == "bypass":
            reported_e[i, d * HOURS:] = x * rng.uniform(0.2, 0.8)
        elif kind == "shunt":
            reported_e[i, d * HOURS:] = x * rng.uniform(0.4, 0.8)
        else:
            reported_e[i, d * HOURS:] = np.maximum(x - rng.uniform(0.3, 0.6) * mean_kwh_h[i], 0)
        faults.append(dict(kind="theft", how=kind, point_id="e%d" % i, group_id="E%d" % ent_of_flat[i],
                           onset=EPOCH_DAY + d))
        onset_of[i] = d
    for _ in range(int(flats * stopped_share)):
        i, d = next(take), onset()
        reported_e[i, d * HOURS:] = 0
        faults.append(dict(kind="stopped", how="stopped", point_id="e%d" % i, group_id="E%d" % ent_of_flat[i],
                           onset=EPOCH_DAY + d))
    for _ in range(int(flats * slow_share)):
        i, d = next(take), onset()
        final = rng.uniform(0.6, 0.85)
        ramp = np.minimum(np.arange(T - d * HOURS) / (7 * HOURS), 1.0)
        reported_e[i, d * HOURS:] *= 1 - (1 - final) * ramp
        faults.append(dict(kind="slow", how="slow", point_id="e%d" % i, group_id="E%d" % ent_of_flat[i],
                           onset=EPOCH_DAY + d))
    for e in rng.choice(n_ent, int(n_ent * unmetered_share), replace=False):
        d = onset()
        kw = rng.uniform(0.3, 2.0)
        evening = ((hour >= 17) & (hour <= 23)).astype(float)
        hidden[e, d * HOURS:] = kw * evening[d * HOURS:]
        faults.append(dict(kind="unmetered", how="unmetered", point_id="E%d" % e, group_id="E%d" % e,
                           onset=EPOCH_DAY + d))
    leaking = rng.choice(flats, int(flats * leak_share), replace=False)
    for i in leaking:
        d = onset()
        start = d * HOURS + int(rng.integers(0, 24))
        true_w[i, start:] += rng.uniform(0.001, 0.010)
        faults.append(dict(kind="leak", how="leak", point_id="w%d" % i, group_id="W%d" % house_of_ent[ent_of_flat[i]],
                           onset=EPOCH_DAY + d))

    values = np.zeros((len(meters), T))
    e_rows = first_flat + np.arange(flats)
    w_rows = first_flat + flats + np.arange(flats)
    values[e_rows] = pulses(reported_e * (1 + rng.normal(0, 0.005, flats))[:, None], 1000)
    values[w_rows] = pulses(true_w * (1 + rng.normal(0, 0.01, flats))[:, None], 1000)

    def losses(flow, level):
        mean = flow.mean(axis=1, keepdims=True)
        return LEVEL_LOSS_PCT[level] / 100 * flow ** 2 / np.where(mean > 0, mean, 1)

    def sum_by(parent_of, flows, n):
        out = np.zeros((n, T))
        np.add.at(out, parent_of, flows)
        return out

    ent = sum_by(ent_of_flat, true_e + OWN_KWH, n_ent) + hidden
    ent += losses(ent, "entrance")
    house = sum_by(house_of_ent, ent + OWN_KWH, n_house)
    house += losses(house, "house")
    street = sum_by(street_of_house, house + OWN_KWH, n_street)
    street += losses(street, "street")
    dist = street.sum(axis=0, keepdims=True) + OWN_KWH * n_street
    dist += losses(dist, "district")
    water_house = sum_by(house_of_ent[ent_of_flat], true_w, n_house) * 1.01
    for prefix, flows, n, cls in (("EI", ent, n_ent, 0.002), ("HI", house, n_house, 0.002),
                                  ("SI", street, n_street, 0.002), ("DI", dist, 1, 0.002),
                                  ("WI", water_house, n_house, 0.01)):
        rows = [row[prefix + ("" if prefix == "DI" else str(k))] for k in range(n)]
        values[rows] = pulses(flows * (1 + rng.normal(0, cls, n))[:, None], 1000)

    # Lost hours: gaps of 1–48 h covering about ``gap_share`` of all meter-hours.
    n_gaps = rng.poisson(gap_share * values.size / GAP_MEAN_HOURS)
    for m, start, length in zip(rng.integers(0, len(meters), n_gaps), rng.integers(0, T, n_gaps),
                                np.minimum(rng.geometric(1 / GAP_MEAN_HOURS, n_gaps), 48)):
        values[m, start:start + length] = np.nan
    return District(groups, meters, values, events, faults, EPOCH_DAY, history_days)


def pulses(flow, per_unit):
    """Hourly values a pulse meter reports: whole pulses of its register, carried hour to hour."""
    register = np.floor(np.cumsum(flow, axis=1) * per_unit)
    first = np.floor(flow[:, :1] * per_unit)
    return np.concatenate((first, np.diff(register, axis=1)), axis=1) / per_unit
