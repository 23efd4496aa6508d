"""The balance engine: hourly and daily balance of every group at once, with numpy.

For group g and hour t::

    imbalance = input − members − technical losses − equipment consumption
    imbalance % = imbalance / input × 100

- input: the sum of the group's input meters;
- members: its member meters, plus the members of sub-groups that have no input meter;
- technical losses: ``loss_pct`` of the input ("fixed"), or growing with the square of the
  load ("quadratic": loss_pct × input² / the day's mean input, the same share at mean load);
- equipment: the group's ``equipment_w``, else 2 W per electricity meter among its members;
- completeness: the share of the input and member meter-hours that were measured (or a
  single lost hour interpolated); estimated and missing hours lower it. A group-hour with a
  value nothing could estimate is "incomplete", never an imbalance;
- coincidence: the members' summed load over the sum of each member's own daily maximum; the
  daily row carries its minimum and maximum over the day's hours (the curves beside the
  imbalance: well-balanced phases make the imbalance follow the minimum curve).

Status per group and period: "no_input", "incomplete", "alarm" (|imbalance %| above the
group's threshold) or "ok".
"""

import datetime as dt

import numpy as np

from central import vee
from central.model import METER_OWN_W
from central.store import HOURS, INTERPOLATED, MEASURED

# Below this share of measured meter-hours a group's balance is "incomplete" rather than judged.
MIN_COMPLETENESS = 0.9

COLUMNS = ("group_id", "level", "period", "input", "members", "losses", "equipment", "imbalance",
           "imbalance_pct", "completeness", "coincidence_min", "coincidence_max", "status")


def day_number(text_or_day):
    """Days since 1970-01-01 of ``YYYY-MM-DD`` (or an int passed through)."""
    if isinstance(text_or_day, (int, np.integer)):
        return int(text_or_day)
    return (dt.date.fromisoformat(str(text_or_day)) - dt.date(1970, 1, 1)).days


def day_text(day):
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()


class Structure:
    """The model as index arrays: which meter rows are inputs and members of which group rows."""

    def __init__(self, model):
        self.model = model
        self.group_ids = list(model.groups)
        gidx = {g: i for i, g in enumerate(self.group_ids)}
        rows = model.meter_index()
        self.n_groups = len(self.group_ids)
        self.n_meters = len(rows)
        inputs = [(gidx[g.id], rows[m]) for g in model.groups.values() for m in g.inputs if m in rows]
        members = []
        for m in model.meters.values():
            g = model.groups.get(m.group)
            # A group without an input meter passes its members up to the nearest group with one.
            while g is not None:
                members.append((gidx[g.id], rows[m.id]))
                if g.inputs:
                    break
                g = model.groups.get(g.parent)
        self.input_g, self.input_m = _pairs(inputs)
        self.member_g, self.member_m = _pairs(members)
        groups = list(model.groups.values())
        self.has_input = np.bincount(self.input_g, minlength=self.n_groups) > 0
        self.n_members = np.bincount(self.member_g, minlength=self.n_groups)
        # meters a group's completeness counts: its inputs and its members
        self.n_points = (self.n_members + np.bincount(self.input_g, minlength=self.n_groups))[:, None]
        self.loss_share = np.array([g.loss_pct / 100.0 for g in groups])
        self.quadratic = np.array([g.loss_model == "quadratic" for g in groups], dtype=bool)
        own_w = np.array([g.equipment_w if g.equipment_w is not None
                          else METER_OWN_W[g.resource] * n for g, n in zip(groups, self.n_members)])
        self.equipment_per_hour = own_w / 1000.0  # W over one hour = Wh; kWh for electricity
        self.threshold_pct = np.array([g.threshold_pct for g in groups])
        self.levels = [g.level for g in groups]
        self.resources = [g.resource for g in groups]


def _pairs(pairs):
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.array(sorted(pairs), dtype=np.int64)
    return a[:, 0], a[:, 1]


def group_sums(g, m, values, n_groups):
    """[n_groups, hours]: for each pair (g[i], m[i]) add values[m[i]] to row g[i] (pairs sorted by g)."""
    return sum_runs(g, values[m], n_groups)


def sum_runs(g, rows, n_groups, dtype=None):
    """[n_groups, hours]: ``rows`` (one per pair, pairs sorted by g) summed into row g[i] (in ``dtype``)."""
    out = np.zeros((n_groups, rows.shape[1]))
    if len(g) == 0:
        return out
    starts = np.concatenate(([0], np.nonzero(np.diff(g))[0] + 1))
    out[g[starts]] = np.add.reduceat(rows, starts, axis=0, dtype=dtype)
    return out


class Window:
    """Hourly values (gaps estimated) of every meter over ``ndays`` days from ``day0``."""

    def __init__(self, model, day0, values, quality, estimate=True):
        self.model = model
        self.day0 = day0
        self.ndays = values.shape[1] // HOURS
        self.raw_quality = quality
        if estimate:
            values, quality = vee.fill(values, quality, day0)
        self.values = values
        self.quality = quality

    @classmethod
    def load(cls, store, day0, ndays, model=None):
        model = model or store.load_model()
        values, quality = store.load_days(day0, ndays, len(model.meters))
        return cls(model, day0, values, quality)


class Balances:
    """Hourly arrays [groups, hours] of every balance term over a window; ``daily()`` sums them."""

    def __init__(self, structure, window):
        s = self.structure = structure
        self.day0 = window.day0
        self.ndays = window.ndays
        v = np.nan_to_num(window.values, nan=0.0)
        self.input = group_sums(s.input_g, s.input_m, v, s.n_groups)
        self.members = group_sums(s.member_g, s.member_m, v, s.n_groups)
        counted = np.concatenate((s.input_g, s.member_g))
        meters = np.concatenate((s.input_m, s.member_m))
        order = np.argsort(counted, kind="stable")
        counted, meters = counted[order], meters[order]
        quality = window.quality[meters]  # one byte a value: the counts below gather nothing wider
        self.measured = sum_runs(counted, (quality == MEASURED) | (quality == INTERPOLATED), s.n_groups, np.int32)
        self.unknown = sum_runs(counted, np.isnan(window.values)[meters], s.n_groups, np.int32)
        # meter-hours measured as such (not even a single lost hour interpolated): analytics
        # judge a group's hour only when every one of its points was
        self.strictly_measured = sum_runs(counted, quality == MEASURED, s.n_groups, np.int32)
        days = self.input.reshape(s.n_groups, self.ndays, HOURS)
        mean_day = np.repeat(days.mean(axis=2), HOURS, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            quad = np.where(mean_day > 0, self.input ** 2 / mean_day, 0.0)
        self.losses = s.loss_share[:, None] * np.where(s.quadratic[:, None], quad, self.input)
        self.equipment = np.where(s.has_input, s.equipment_per_hour, 0.0)[:, None] * np.ones_like(self.input)
        self.imbalance = self.input - self.members - self.losses - self.equipment
        meter_max = v.reshape(len(v), self.ndays, HOURS).max(axis=2)
        self.peak_sum = group_sums(s.member_g, s.member_m, meter_max, s.n_groups)

    def hourly(self, day):
        """Rows (dicts with COLUMNS) of every group for each hour of ``day``."""
        k = day - self.day0
        cols = slice(k * HOURS, (k + 1) * HOURS)
        with np.errstate(invalid="ignore", divide="ignore"):
            coincidence = self.members[:, cols] / self.peak_sum[:, k:k + 1]
        return _rows(self, cols, coincidence, coincidence,
                     ["%sT%02d:00:00Z" % (day_text(day), h) for h in range(HOURS)])

    def daily(self, day):
        """Rows of every group for ``day``."""
        k = day - self.day0
        cols = slice(k * HOURS, (k + 1) * HOURS)
        with np.errstate(invalid="ignore", divide="ignore"):
            coincidence = self.members[:, cols] / self.peak_sum[:, k:k + 1]
        return _rows(self, cols, coincidence.min(axis=1, keepdims=True), coincidence.max(axis=1, keepdims=True),
                     [day_text(day)], daily=True)

    def daily_arrays(self):
        """[groups, days] arrays: input, members, imbalance, completeness, unknown hours."""
        def per_day(a):
            return a.reshape(a.shape[0], self.ndays, HOURS).sum(axis=2)
        points = np.maximum(self.structure.n_points, 1) * HOURS
        return {"input": per_day(self.input), "members": per_day(self.members),
                "imbalance": per_day(self.imbalance), "completeness": per_day(self.measured) / points,
                "unknown": per_day(self.unknown)}


def _rows(b, cols, cf_min, cf_max, periods, daily=False):
    s = b.structure
    terms = [b.input[:, cols], b.members[:, cols], b.losses[:, cols], b.equipment[:, cols],
             b.imbalance[:, cols], b.measured[:, cols], b.unknown[:, cols]]
    if daily:
        terms = [t.sum(axis=1, keepdims=True) for t in terms]
    inp, mem, loss, equip, imb, measured, unknown = terms
    points = np.maximum(s.n_points, 1) * (HOURS if daily else 1)
    completeness = measured / points
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(inp > 0, imb / inp * 100.0, np.nan)
    status = np.where(~s.has_input[:, None], "no_input",
                      np.where((completeness < MIN_COMPLETENESS) | (unknown > 0), "incomplete",
                               np.where(np.abs(np.nan_to_num(pct)) > s.threshold_pct[:, None], "alarm", "ok")))
    out = []
    for gi, gid in enumerate(s.group_ids):
        for k, period in enumerate(periods):
            out.append({"group_id": gid, "level": s.levels[gi], "period": period,
                        "input": float(inp[gi, k]), "members": float(mem[gi, k]), "losses": float(loss[gi, k]),
                        "equipment": float(equip[gi, k]), "imbalance": float(imb[gi, k]),
                        "imbalance_pct": _num(pct[gi, k]), "completeness": float(completeness[gi, k]),
                        "coincidence_min": _num(cf_min[gi, k]), "coincidence_max": _num(cf_max[gi, k]),
                        "status": str(status[gi, k])})
    return out


def _num(x):
    return None if not np.isfinite(x) else float(x)


def compute(store, day, group=None, hourly=False, history_days=7):
    """Balance rows of ``day`` (``YYYY-MM-DD`` or a day number) for every group or one.

    ``history_days`` of earlier data feed the like-day estimates of gaps.
    """
    day = day_number(day)
    model = store.load_model()
    if group is not None and group not in model.groups:
        raise ValueError("unknown group %r" % group)
    day0 = day - history_days
    window = Window.load(store, day0, history_days + 1, model)
    balances = Balances(Structure(model), window)
    rows = balances.hourly(day) if hourly else balances.daily(day)
    return [r for r in rows if group is None or r["group_id"] == group]


def format_table(rows):
    """The rows as a fixed-width text table."""
    header = ("group", "level", "period", "input", "members", "losses", "equip", "imbalance", "imb %",
              "complete", "cf min", "cf max", "status")
    lines = ["%-22s %-9s %-20s %10s %10s %9s %8s %10s %7s %8s %6s %6s %s" % header]
    for r in rows:
        lines.append("%-22s %-9s %-20s %10.3f %10.3f %9.3f %8.3f %10.3f %7s %8.3f %6s %6s %s" % (
            r["group_id"][:22], r["level"], r["period"], *(_shown(r[k], 3) for k in (
                "input", "members", "losses", "equipment", "imbalance")),
            _fmt(r["imbalance_pct"], "%.2f"), r["completeness"],
            _fmt(r["coincidence_min"], "%.2f"), _fmt(r["coincidence_max"], "%.2f"), r["status"]))
    return "\n".join(lines)


def _shown(x, digits):
    """``x`` as printed to ``digits``: rounding noise must not show as "-0.000"."""
    return round(x, digits) + 0.0


def _fmt(x, pattern):
    return "-" if x is None else pattern % _shown(x, 2)
