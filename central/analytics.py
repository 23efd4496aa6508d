"""Next-day alerts: imbalance, suspects (culprits), stopped meters, leaks, tamper, data gaps.

Everything is judged against each group's and each meter's own recent past (the
``HISTORY_DAYS`` before the day), not against fixed numbers, so that the same rules
work on districts of any size and shape:

- **imbalance**: the group's daily imbalance rose above what its own history explains
  (its usual share of the input, give or take ``RISE_SIGMAS`` robust deviations, widened
  by the uncertainty of any estimated member hours), or exceeds the group's threshold.
- **suspect**: in a group whose imbalance rose, every member is scored by how well its
  own deficit (its forecast minus what it reported) explains the rise, hour by hour, over
  the days of the rise: the log-likelihood ratio of "this member's deficit is the missing
  energy" against "this member's deficit is its usual variation". A member whose profile
  changed while the group's balance did not is not suspect. Up to ``SUSPECTS_PER_GROUP``
  are listed, ranked by score; a rise no member explains is reported as an unmetered load.
- **stopped_meter**: a meter that used to count and reported zero (or one frozen value)
  all day, while its group's imbalance rose by a good part of its usual consumption.
- **leak** (water): flow in every hour of the day, with the minimum hourly flow above the
  meter's usual minimum night flow.
- **tamper**: magnet, cover or tamper events of the day, scored higher when the meter's
  group imbalance rose at the same time.
- **data_gap**: meters with hours the store never received (more than a single hour,
  which is interpolated).
"""

import numpy as np

from central.balance import MIN_COMPLETENESS, Balances, Structure, Window, day_number
from central.store import HOURS, MEASURED, MISSING

HISTORY_DAYS = 28
RISE_SIGMAS = 5.0  # robust deviations a daily imbalance must rise by to be an alert
# ... and at least this share of the group's input: below it, meter class errors and loss
# model errors of one day are indistinguishable from theft.
MIN_RISE_SHARE = 0.003
MAX_RISE_DAYS = 3  # the rise's days that score suspects (the recent past of a persistent theft)
SUSPECTS_PER_GROUP = 3
MAD_TO_SIGMA = 1.4826
# A member's usual daily variation is never taken below this share of its forecast: a
# meter that has been flat so far would otherwise outweigh everyone the day it moves.
MIN_RELATIVE_SIGMA = 0.1
STOPPED_MIN_HOURS = 20  # measured hours a day needs before "it counted nothing" means something
STOPPED_RISE_SHARE = 0.5  # share of a stopped meter's forecast its group's imbalance must rise by
LEAK_MIN_FLOW = 0.0005  # m³/h (0.5 L/h): below this no pulse meter can tell a leak from rounding
LEAK_BASELINE_FACTOR = 1.5  # the day's minimum flow must exceed the usual minimum by this factor
TAMPER_EVENTS = ("magnet", "tamper", "cover_open")


def alerts(store, day, history_days=HISTORY_DAYS):
    """The alerts for ``day`` (``YYYY-MM-DD`` or a day number), as dicts (docs/central.md)."""
    day = day_number(day)
    model = store.load_model()
    window = Window.load(store, day - history_days, history_days + 1, model)
    events = store.events_between(day * 86400, (day + 1) * 86400)
    return find_alerts(model, window, events)


def find_alerts(model, window, events=()):
    """Alerts on the last day of ``window`` (a central.balance.Window over the history and the day)."""
    s = Structure(model)
    b = Balances(s, window)
    meter_ids = list(model.meters)
    group_of = [m.group for m in model.meters.values()]
    stats = MeterStats(window)
    rise = GroupRise(b, s, stats)
    found = []
    found += rise.imbalance_alerts()
    found += _suspects(rise, stats, s, meter_ids)
    found += _stopped(stats, rise, s, meter_ids, group_of)
    found += _leaks(stats, model, meter_ids, group_of)
    found += _tamper(events, model, rise, s)
    found += _gaps(stats, meter_ids, group_of)
    kinds = ("imbalance", "suspect", "stopped_meter", "leak", "tamper", "data_gap")
    found.sort(key=lambda a: (kinds.index(a["kind"]), a["group_id"] or "", -a["score"]))
    return found


def _alert(kind, point_id, group_id, score, detail):
    return {"kind": kind, "point_id": point_id, "group_id": group_id, "score": round(float(score), 4),
            "detail": detail}


def _robust(x, axis):
    """(median, robust deviation) along ``axis``, ignoring NaN."""
    med = np.nanmedian(x, axis=axis)
    mad = np.nanmedian(np.abs(x - np.expand_dims(med, axis)), axis=axis)
    return med, MAD_TO_SIGMA * mad


class MeterStats:
    """Each meter's history (forecast, usual variation) and its last day, daily and hourly."""

    def __init__(self, window):
        n, ndays = window.values.shape[0], window.ndays
        self.ndays = ndays
        hourly = window.values.reshape(n, ndays, HOURS)
        self.hourly = hourly
        self.raw_quality = window.raw_quality.reshape(n, ndays, HOURS)
        self.quality = window.quality.reshape(n, ndays, HOURS)
        history = hourly[:, :-1, :]
        with np.errstate(invalid="ignore"), _quiet():
            daily = history.sum(axis=2)  # NaN where a day has an unestimated hole
            self.forecast, sigma = _robust(daily, axis=1)
            self.forecast = np.nan_to_num(self.forecast)
            self.sigma = np.maximum(np.nan_to_num(sigma), MIN_RELATIVE_SIGMA * self.forecast) + 1e-6
            self.hour_forecast, hsigma = _robust(history, axis=1)
            self.hour_forecast = np.nan_to_num(self.hour_forecast)
            self.hour_sigma = np.maximum(np.nan_to_num(hsigma), MIN_RELATIVE_SIGMA * self.forecast[:, None] / HOURS)
            self.hour_sigma += 1e-6
            self.zero_days = np.nanmean(daily <= 0, axis=1)
            self.min_flow = np.nanmin(history, axis=2)  # [meters, history days]
        self.today = np.nan_to_num(hourly[:, -1, :])
        self.today_sum = self.today.sum(axis=1)
        self.measured_today = (self.raw_quality[:, -1, :] == MEASURED).sum(axis=1)
        self.missing_today = (self.raw_quality[:, -1, :] == MISSING).sum(axis=1)
        self.estimated_share = 1 - (self.quality[:, -1, :] == MEASURED).mean(axis=1)


class _quiet:
    """Silence numpy's all-NaN warnings: a meter without history simply has no forecast."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


class GroupRise:
    """Each group's imbalance against what its history explains, for every day of the window."""

    def __init__(self, b, s, stats):
        self.b, self.s = b, s
        d = b.daily_arrays()
        inp, imb = d["input"], d["imbalance"]
        valid = (d["completeness"] >= MIN_COMPLETENESS) & (d["unknown"] == 0) & (inp > 0)
        self.valid = valid
        hist = np.where(valid[:, :-1], imb[:, :-1] / np.where(inp[:, :-1] > 0, inp[:, :-1], 1), np.nan)
        with _quiet():
            self.share = np.nan_to_num(np.nanmedian(hist, axis=1))
            resid_hist = np.where(valid[:, :-1], imb[:, :-1] - self.share[:, None] * inp[:, :-1], np.nan)
            _, sigma = _robust(resid_hist, axis=1)
            typical = np.nanmedian(np.where(valid, inp, np.nan), axis=1)
        self.sigma = np.maximum(np.nan_to_num(sigma), 1e-3 * np.nan_to_num(typical)) + 1e-9
        self.residual = imb - self.share[:, None] * inp  # [groups, days]
        self.hourly_residual = b.imbalance - self.share[:, None] * b.input  # [groups, hours]
        # Estimated member hours widen the band: their error goes straight into the imbalance.
        est_var = np.zeros(s.n_groups)
        est = stats.estimated_share * stats.sigma
        np.add.at(est_var, s.member_g, est[s.member_m] ** 2)
        np.add.at(est_var, s.input_g, est[s.input_m] ** 2)
        self.sigma_today = np.sqrt(self.sigma ** 2 + est_var)
        self.input = inp
        self.imbalance = imb
        limit = np.maximum(RISE_SIGMAS * self.sigma_today[:, None], MIN_RISE_SHARE * inp)
        self.risen = valid & (self.residual > limit) & s.has_input[:, None]
        self.pct = np.where(inp > 0, imb / np.where(inp > 0, inp, 1) * 100, 0.0)

    def rise_days(self, g):
        """Indexes of the consecutive risen days that end with the last day (at most MAX_RISE_DAYS)."""
        days = []
        k = self.b.ndays - 1
        while k >= 0 and len(days) < MAX_RISE_DAYS and self.risen[g, k]:
            days.append(k)
            k -= 1
        return days[::-1]

    def imbalance_alerts(self):
        out = []
        s, k = self.s, self.b.ndays - 1
        over = self.valid[:, k] & (np.abs(self.pct[:, k]) > s.threshold_pct) & s.has_input
        for g in np.nonzero(self.risen[:, k] | over)[0]:
            z = self.residual[g, k] / self.sigma_today[g]
            detail = "imbalance %.2f %% of input (%.3f), usual %.2f %%, rise %.1f sigma%s" % (
                self.pct[g, k], self.imbalance[g, k], self.share[g] * 100, z,
                "; over the %.1f %% threshold" % s.threshold_pct[g] if over[g] else "")
            out.append(_alert("imbalance", s.group_ids[g], s.group_ids[g], max(z, abs(self.pct[g, k])), detail))
        return out


def _suspects(rise, stats, s, meter_ids):
    """Rank the members of every risen group by how well their deficit explains the rise."""
    out = []
    k = rise.b.ndays - 1
    starts = np.searchsorted(s.member_g, np.arange(s.n_groups + 1))
    for g in np.nonzero(rise.risen[:, k])[0]:
        members = s.member_m[starts[g]:starts[g + 1]]
        days = rise.rise_days(g)
        if len(members) == 0 or not days:
            continue
        score = np.zeros(len(members))
        for d in days:
            r = rise.hourly_residual[g, d * HOURS:(d + 1) * HOURS]  # [24]
            deficit = stats.hour_forecast[members] - np.nan_to_num(stats.hourly[members, d, :])
            sigma2 = stats.hour_sigma[members] ** 2
            score += (r[None, :] * (2 * deficit - r[None, :]) / (2 * sigma2)).sum(axis=1)
        today_deficit = stats.forecast[members] - stats.today_sum[members]
        ranked = [i for i in np.argsort(-score) if today_deficit[i] > 0][:SUSPECTS_PER_GROUP]
        group_id = s.group_ids[g]
        if not ranked:
            out.append(_alert("imbalance", group_id, group_id, 0.0,
                              "no member's deficit explains the rise: an unmetered load or a fault upstream"))
            continue
        for rank, i in enumerate(ranked, 1):
            m = members[i]
            out.append(_alert("suspect", meter_ids[m], group_id, score[i],
                              "rank %d: reported %.3f against a forecast of %.3f; group imbalance rose by %.3f "
                              "over %d day(s)" % (rank, stats.today_sum[m], stats.forecast[m],
                                                 rise.residual[g, k], len(days))))
    return out


def _stopped(stats, rise, s, meter_ids, group_of):
    """Meters that counted nothing (or froze) all day although they usually count."""
    out = []
    k = rise.b.ndays - 1
    gidx = {gid: i for i, gid in enumerate(s.group_ids)}
    today = stats.today
    full = stats.measured_today >= STOPPED_MIN_HOURS
    measured = stats.raw_quality[:, -1, :] == MEASURED
    flat = np.where(measured, today, np.nan)
    with _quiet():
        frozen = full & (np.nanmax(flat, axis=1) == np.nanmin(flat, axis=1))
    usual = (stats.forecast > 0) & (stats.zero_days < 0.2)
    for m in np.nonzero(frozen & usual)[0]:
        g = gidx.get(group_of[m])
        if g is None:
            continue
        rose = rise.residual[g, k] >= STOPPED_RISE_SHARE * stats.forecast[m]
        if not (rose or not rise.valid[g, k]):
            continue
        how = "counted nothing" if np.nanmax(flat[m]) == 0 else "repeated %.3f every hour" % np.nanmax(flat[m])
        out.append(_alert("stopped_meter", meter_ids[m], group_of[m], stats.forecast[m] / stats.sigma[m],
                          "%s all day; usually %.3f a day; group imbalance rose by %.3f" % (
                              how, stats.forecast[m], rise.residual[g, k])))
    return out


def _leaks(stats, model, meter_ids, group_of):
    water = np.array([m.resource == "water" for m in model.meters.values()], dtype=bool)
    measured = stats.raw_quality[:, -1, :] == MEASURED
    flowing = np.where(measured, stats.today, np.inf).min(axis=1)
    with _quiet():
        usual_min = np.nan_to_num(np.nanpercentile(stats.min_flow, 90, axis=1))
    leak = (water & (stats.measured_today >= STOPPED_MIN_HOURS) & (flowing >= LEAK_MIN_FLOW)
            & (flowing > LEAK_BASELINE_FACTOR * usual_min))
    return [_alert("leak", meter_ids[m], group_of[m], flowing[m] * 1000,
                   "flow in every hour, at least %.1f L/h (usual minimum %.1f L/h)" % (
                       flowing[m] * 1000, usual_min[m] * 1000)) for m in np.nonzero(leak)[0]]


def _tamper(events, model, rise, s):
    out = []
    k = rise.b.ndays - 1
    gidx = {gid: i for i, gid in enumerate(s.group_ids)}
    seen = set()
    for meter_id, ts, name, _ in events:
        if name not in TAMPER_EVENTS or (meter_id, name) in seen or meter_id not in model.meters:
            continue
        seen.add((meter_id, name))
        group = model.meters[meter_id].group
        g = gidx.get(group)
        z = 0.0 if g is None else max(0.0, rise.residual[g, k] / rise.sigma_today[g])
        out.append(_alert("tamper", meter_id, group, 1.0 + z,
                          "%s event; group imbalance %s" % (name, "unknown" if g is None else
                                                           "rose %.1f sigma" % z if rise.risen[g, k] else "normal")))
    return out


def _gaps(stats, meter_ids, group_of):
    lost = stats.missing_today > 1
    return [_alert("data_gap", meter_ids[m], group_of[m], stats.missing_today[m] / HOURS,
                   "%d of 24 hours never received" % stats.missing_today[m]) for m in np.nonzero(lost)[0]]
