"""A second synthetic district, built unlike central/synth.py, for judging the analytics
through the CSV interface alone (``balans bench detect_csv``).

Outside tools judge the analytics on districts they generate themselves. This one shares
nothing with synth.py but the CSV formats of docs/central.md, so a method tuned to one
generator shows it here:

- **Use is built from appliances**, not from a load shape with noise: a base load
  (fridge, standby), household activity as Poisson events of 0.1–1 kWh at times set by
  whether the household works, lights in the dark hours, electric heating in a quarter of
  the flats following one outdoor temperature (a daily cycle and multi-day weather), and
  electric water heaters driven by the flat's own hot-water draws.
- **Groups of every size**: rows of 3–10 houses' flats directly under a house group (no
  entrances), and blocks of 2–6 entrances of 8–50 flats.
- **What the utility declares is not the truth**: groups state a fixed loss share
  (``loss_model`` left empty) while the true losses are part fixed, part load-squared and
  differ from the declared share; meter self-consumption is 1.5 W, not the 2 W default.
- **Faults begin at any hour**; a fault's ``onset`` is its first whole day, so "the next
  day" is the morning after the first full day of it. Thefts: a shunt or bypassed phase
  (a share registered), a magnet (a power cap), a bypassed heater or water heater (that
  appliance unregistered), a constant subtracted. Also stopped and slow meters, unmetered
  loads on a group (a grow light 18 h a day), and water leaks of 1–10 L/h.
- **Legitimate changes that look like theft**: holidays of 5–14 days (only the base load
  and frost protection run), some beginning in the days judged.
- **Gaps come as outages**: besides 0.5 % of meter-hours lost at random, every house
  loses all its meters (input, members, water) for 2–12 h twice in the period.
- Inputs count 10 Wh / 10 L; flats 1 Wh / 1 L.

``District.faults`` is the ground truth, in the form ``central.bench.score`` reads, with
``began`` beside ``onset``: the day the fault first touched.
"""

import datetime as dt
import os

import numpy as np

from central import synth

HOURS = 24
START = dt.date(2026, 2, 2)  # a Monday in winter: heating runs
HEATED_SHARE, WATER_HEATER_SHARE, HOLIDAY_SHARE = 0.25, 0.15, 0.05
TRUE_LOSS = {"entrance": (0.3, 1.2), "house": (0.5, 2.0), "street": (1.5, 4.0), "district": (1.0, 3.0)}  # % range
DECLARED_LOSS = {"entrance": "1", "house": "1.5", "street": "3", "district": "2"}
OWN_KWH = 0.0015  # each flat meter's own 1.5 W, taken before it
# Household activity: events an hour, for a household out at work on weekdays and one at home.
WORKERS = np.array([0.02, 0.01, 0.01, 0.01, 0.02, 0.1, 0.6, 0.8, 0.3, 0.05, 0.05, 0.05,
                    0.05, 0.05, 0.05, 0.05, 0.1, 0.5, 0.9, 1.0, 0.9, 0.6, 0.3, 0.1])
AT_HOME = np.array([0.02, 0.01, 0.01, 0.01, 0.01, 0.03, 0.1, 0.3, 0.5, 0.5, 0.4, 0.5,
                    0.7, 0.5, 0.4, 0.4, 0.4, 0.5, 0.7, 0.7, 0.6, 0.5, 0.3, 0.1])
DARK = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0.3, 1, 1, 1, 1, 1, 1, 1], float)
# Water draws an hour per occupant (toilet, tap, shower), by hour of day.
DRAWS = np.array([0.05, 0.03, 0.02, 0.02, 0.05, 0.3, 1.2, 1.5, 0.8, 0.4, 0.3, 0.4,
                  0.5, 0.4, 0.3, 0.3, 0.4, 0.6, 0.8, 0.9, 0.9, 0.8, 0.5, 0.2])


class District(synth.District):
    """synth.District's container (groups, meters, values, events, faults), written as an outside tool would."""

    def write_csv(self, folder):
        """groups.csv, meters.csv, readings.csv, events.csv for ``balans central import``."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "groups.csv"), "w") as f:
            f.write("group_id,parent_id,level,resource,input_meter_id,loss_pct\n")
            f.writelines("%(group_id)s,%(parent_id)s,%(level)s,%(resource)s,%(input_meter_id)s,%(loss_pct)s\n" % g
                         for g in self.groups)
        with open(os.path.join(folder, "meters.csv"), "w") as f:
            f.write("meter_id,group_id,resource\n")
            f.writelines("%(meter_id)s,%(group_id)s,%(resource)s\n" % m for m in self.meters)
        stamps = [(dt.datetime(1970, 1, 1) + dt.timedelta(hours=(self.day0 * HOURS + k))).strftime("%Y-%m-%dT%H:00:00Z")
                  for k in range(self.values.shape[1])]
        with open(os.path.join(folder, "readings.csv"), "w") as f:
            f.write("meter_id,hour_start,value\n")
            for m, row in zip(self.meters, self.values):
                mid = m["meter_id"]
                f.writelines("%s,%s,%.3f\n" % (mid, s, v) for s, v in zip(stamps, row) if v == v)
        with open(os.path.join(folder, "events.csv"), "w") as f:
            f.write("meter_id,ts,event\n")
            f.writelines("%s,%s,%s\n" % (mid, (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=ts)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), name) for mid, ts, name, _ in self.events)


def district(flats=2500, history_days=28, test_days=14, seed=1, theft_share=0.012, stopped_share=0.002,
             slow_share=0.002, unmetered_share=0.02, leak_share=0.02):
    """Generate a District of about ``flats`` flats; fault shares are of flats (unmetered: of groups)."""
    rng = np.random.default_rng(seed)
    ndays = history_days + test_days
    T = ndays * HOURS
    day0 = (START - dt.date(1970, 1, 1)).days
    hour = np.arange(T) % HOURS
    weekend = ((START.weekday() + np.arange(T) // HOURS) % 7 >= 5)

    # ---- the tree: district, 4 streets, houses that are rows or blocks of entrances
    groups, meters = [], []
    level_of = {}
    house_of = {}  # group -> its house: outages take a whole house down

    def group(gid, parent, level, resource):
        loss = DECLARED_LOSS[level] if resource == "electricity" else "1"
        groups.append(dict(group_id=gid, parent_id=parent, level=level, resource=resource, input_meter_id=gid + "-in",
                           loss_pct=loss))
        level_of[gid] = level
        meters.append(dict(meter_id=gid + "-in", group_id=parent, resource=resource))

    group("dist", "", "district", "electricity")
    flat_group, flat_water = [], []  # each flat's electricity group and water group
    leaves = []  # groups whose members are flats
    houses = []
    n = 0
    while n < flats:
        street = "st%d" % (len(houses) % 4)
        if len(houses) < 4:
            group(street, "dist", "street", "electricity")
        h = "h%d" % len(houses)
        group(h, street, "house", "electricity")
        group(h + "w", "", "house", "water")
        house_of[h] = house_of[h + "w"] = h
        houses.append(h)
        if rng.random() < 0.4:  # a row of small houses: flats directly under the house
            sizes, parents = [int(rng.integers(3, 11))], [h]
        else:
            sizes = [int(rng.integers(8, 51)) for _ in range(int(rng.integers(2, 7)))]
            parents = ["%se%d" % (h, k) for k in range(len(sizes))]
            for p in parents:
                group(p, h, "entrance", "electricity")
                house_of[p] = h
        for p, size in zip(parents, sizes):
            leaves.append(p)
            for _ in range(size):
                flat_group.append(p)
                flat_water.append(h + "w")
                n += 1
    F = n
    flat_ids = ["f%04d" % i for i in range(F)]
    first_flat = len(meters)
    meters += [dict(meter_id=flat_ids[i] + "e", group_id=flat_group[i], resource="electricity") for i in range(F)]
    meters += [dict(meter_id=flat_ids[i] + "w", group_id=flat_water[i], resource="water") for i in range(F)]
    row = {m["meter_id"]: k for k, m in enumerate(meters)}

    # ---- true use of each flat, by component
    occupants = rng.integers(1, 5, F)
    works = rng.random(F) < 0.6
    profile = np.where(works[:, None] & ~weekend[None, :], WORKERS[hour][None, :], AT_HOME[hour][None, :])
    present = np.ones((F, T))
    for i in rng.choice(F, int(F * HOLIDAY_SHARE), replace=False):  # away: only base load and frost protection
        start = int(rng.integers(0, T - 5 * HOURS))
        present[i, start:start + int(rng.integers(5, 15)) * HOURS] = 0
    base = rng.uniform(0.03, 0.12, F)[:, None] * rng.gamma(25, 1 / 25, (F, T))
    events = rng.poisson(profile * (0.5 + 0.35 * occupants[:, None]) * present)
    activity = rng.gamma(np.maximum(events, 1e-9) * 2, rng.uniform(0.08, 0.25, F)[:, None] / 2) * (events > 0)
    lights = rng.uniform(0.03, 0.2, F)[:, None] * DARK[hour][None, :] * present * (profile > 0.05)
    # one outdoor temperature: a daily cycle around multi-day weather
    weather = np.repeat(np.cumsum(rng.normal(0, 2.0, ndays)) * 0.7 - 3, HOURS)
    outdoor = weather + 4 * np.sin((hour - 9) / 24 * 2 * np.pi)
    heated = rng.random(F) < HEATED_SHARE
    heater_kw = rng.uniform(1.0, 2.5, F)[:, None] * heated[:, None]
    demand = np.clip((18 - outdoor) / 30, 0, 1)[None, :] * np.where(present > 0, 1.0, 0.3)
    heating = heater_kw * demand * rng.uniform(0.6, 1.0, (F, T))
    # water: draws of a toilet (6 L), a tap (3 L), a shower (45 L)
    n_draws = rng.poisson(DRAWS[hour][None, :] * occupants[:, None] * present)
    litres = n_draws * rng.choice([6.0, 3.0, 3.0, 45.0], (F, T)) * rng.uniform(0.7, 1.3, (F, T))
    water = litres / 1000
    water_heater = (rng.random(F) < WATER_HEATER_SHARE)[:, None] * litres * 0.4 * 0.0465  # 40 % hot, heated 40 K
    parts = {"heater": heating, "water_heater": water_heater}
    true_e = base + activity + lights + heating + water_heater

    # ---- faults
    reported = true_e.copy()
    hidden = {}  # leaf group -> unmetered kWh per hour
    faults, log = [], []
    candidates = iter(rng.permutation(F))

    def onset():
        """(first hour of the fault, its first whole day, the day it began; days as unix days)."""
        t = int(rng.integers(history_days * HOURS - 12, (ndays - 3) * HOURS))
        return t, day0 + -(-t // HOURS), day0 + t // HOURS

    mean = true_e[:, :history_days * HOURS].mean(axis=1)
    hows = ["shunt", "magnet", "appliance", "subtract"]
    for k in range(int(F * theft_share)):
        i = next(candidates)
        t, day, began = onset()
        how = hows[k % len(hows)]
        x = true_e[i, t:]
        if how == "appliance":
            part = "heater" if heated[i] else "water_heater"
            if not parts[part][i].any():
                how = "shunt"
        if how == "shunt":
            reported[i, t:] = x * rng.uniform(0.3, 0.7)
        elif how == "magnet":
            reported[i, t:] = np.minimum(x, mean[i] * rng.uniform(0.6, 1.2))
            if rng.random() < 0.5:
                log.append((flat_ids[i] + "e", (day0 * HOURS + t) * 3600 + int(rng.integers(0, 3600)), "magnet", 0))
        elif how == "appliance":
            reported[i, t:] = x - parts[part][i, t:]
        else:
            reported[i, t:] = np.maximum(x - mean[i] * rng.uniform(0.3, 0.6), 0)
        faults.append(dict(kind="theft", how=how, point_id=flat_ids[i] + "e", group_id=flat_group[i], onset=day,
                           began=began))
    for kind, share in (("stopped", stopped_share), ("slow", slow_share)):
        for _ in range(int(F * share)):
            i = next(candidates)
            t, day, began = onset()
            reported[i, t:] *= 0 if kind == "stopped" else rng.uniform(0.5, 0.85)
            faults.append(dict(kind=kind, how=kind, point_id=flat_ids[i] + "e", group_id=flat_group[i], onset=day,
                               began=began))
    for g in rng.choice(leaves, max(1, int(len(leaves) * unmetered_share)), replace=False):
        t, day, began = onset()
        on = ((hour - rng.integers(0, 24)) % 24 < 18).astype(float)  # a grow light, 18 h on
        hidden[g] = np.where(np.arange(T) >= t, rng.uniform(0.4, 1.2) * on, 0)
        faults.append(dict(kind="unmetered", how="unmetered", point_id=g, group_id=g, onset=day, began=began))
    for i in rng.choice(F, int(F * leak_share), replace=False):
        t, day, began = onset()
        water[i, t:] += rng.uniform(0.001, 0.010)
        faults.append(dict(kind="leak", how="leak", point_id=flat_ids[i] + "w", group_id=flat_water[i], onset=day,
                           began=began))

    # ---- what the meters register
    values = np.zeros((len(meters), T))
    values[first_flat:first_flat + F] = _pulses(reported * rng.uniform(0.99, 1.01, F)[:, None], 1000)
    values[first_flat + F:first_flat + 2 * F] = _pulses(water * rng.uniform(0.98, 1.02, F)[:, None], 1000)
    flow = {}  # group -> true flow into it
    for i, g in enumerate(flat_group):
        flow.setdefault(g, np.zeros(T))
        flow[g] += true_e[i] + OWN_KWH
    for i, g in enumerate(flat_water):
        flow.setdefault(g, np.zeros(T))
        flow[g] += water[i]
    for g, extra in hidden.items():
        flow[g] += extra
    parent_of = {g["group_id"]: g["parent_id"] for g in groups}
    for level in ("entrance", "house", "street", "district"):  # bottom up: each input feeds its parent
        for g in [g for g in flow if level_of[g] == level]:
            lo, hi = TRUE_LOSS[level] if not g.endswith("w") else (0.5, 1.5)
            share, split = rng.uniform(lo, hi) / 100, rng.uniform(0.2, 0.8)
            m = flow[g].mean()
            flow[g] = flow[g] * (1 + share * (1 - split)) + share * split * flow[g] ** 2 / (m if m > 0 else 1)
            values[row[g + "-in"]] = _pulses(flow[g][None, :] * rng.uniform(0.995, 1.005), 100)[0]
            p = parent_of[g]
            if p:
                flow.setdefault(p, np.zeros(T))
                flow[p] += flow[g]

    # ---- lost hours: scattered gaps, and each house's outages (input, members and water together)
    n_gaps = rng.poisson(0.005 * values.size / 4)
    for m, start, length in zip(rng.integers(0, len(meters), n_gaps), rng.integers(0, T, n_gaps),
                                rng.integers(1, 9, n_gaps)):
        values[m, start:start + length] = np.nan
    house_rows = {}
    for k, m in enumerate(meters):
        g = m["meter_id"][:-3] if m["meter_id"].endswith("-in") else m["group_id"]
        if g in house_of:
            house_rows.setdefault(house_of[g], []).append(k)
    for h, rows in house_rows.items():
        for _ in range(2):
            start = int(rng.integers(0, T - 12))
            values[rows, start:start + int(rng.integers(2, 13))] = np.nan
    return District(groups, meters, values, log, faults, day0, history_days)


def _pulses(flow, per_unit):
    """Hourly values of a pulse register: whole pulses, the remainder carried to the next hour."""
    register = np.floor(np.cumsum(flow, axis=1) * per_unit)
    return np.diff(register, axis=1, prepend=0) / per_unit
