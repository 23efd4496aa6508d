"""Next-day alerts: imbalance, suspects (culprits), stopped meters, leaks, tamper, data gaps.

Everything is judged against each group's and each meter's own recent past (the
``HISTORY_DAYS`` before the day), not against fixed numbers, so that the same rules
work on districts of any size and shape:

- **imbalance**: the group's daily imbalance rose above what its own history explains, or
  exceeds the group's threshold. The history's explanation is a fit a + b·input + c·Σ input²
  (no-load and metering, proportional errors, load losses) on its fully measured days. A
  day is judged on the hours in which every point of the group was measured (an estimate's
  error would go straight into the imbalance), against the same hours of the history, and
  must rise by ``RISE_SIGMAS`` robust deviations and ``MIN_RISE_SHARE`` of the input.
- **suspect**: in a group whose imbalance rose, every member is scored by how well its
  own deficit (its forecast minus what it reported) explains the rise, day by day, over
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
from central.store import ESTIMATED, HOURS, MEASURED, MISSING

HISTORY_DAYS = 28
RISE_SIGMAS = 5.0  # robust deviations a daily imbalance must rise by to be an alert
# ... and at least this share of the group's input: below it, meter class errors and loss
# model errors of one day are indistinguishable from theft.
MIN_RISE_SHARE = 0.0015
MIN_FIT_DAYS = 8  # fully measured days a baseline wants before days with estimates are used
MIN_FIT_TERMS = 4  # fewer usable days than this and a group is not judged at all
TRIM_SIGMAS = 4.0  # history days this far off the first fit are left out of the second
RIDGE = 1e-6  # keeps the 3-term fit solvable when a group's load barely varies
# The robust deviation of a group's daily imbalance is never taken below this share of its
# input: class 0.5S input meters repeat to about that over a day.
MIN_SIGMA_SHARE = 2e-4
MIN_FULL_HOURS = 12  # fully measured hours a day needs to be judged at all
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
    median = np.nanmedian if np.isnan(x).any() else np.median  # the plain one is much faster
    med = median(x, axis=axis)
    mad = median(np.abs(x - np.expand_dims(med, axis)), axis=axis)
    return med, MAD_TO_SIGMA * mad


class MeterStats:
    """Each meter's history (forecast, usual variation) and its last day, daily and hourly."""

    def __init__(self, window):
        n, ndays = window.values.shape[0], window.ndays
        self.ndays = ndays
        hourly = window.values.reshape(n, ndays, HOURS)
        self.hourly = hourly
        self.raw_quality = window.raw_quality.reshape(n, ndays, HOURS)
        history = hourly[:, :-1, :]
        with np.errstate(invalid="ignore"), _quiet():
            daily = history.sum(axis=2)  # NaN where a day has an unestimated hole
            self.forecast, sigma = _robust(daily, axis=1)
            self.forecast = np.nan_to_num(self.forecast)
            self.sigma = np.maximum(np.nan_to_num(sigma), MIN_RELATIVE_SIGMA * self.forecast) + 1e-6
            self.hour_forecast = np.nan_to_num(_robust(history, axis=1)[0])
            self.zero_days = np.nanmean(daily <= 0, axis=1)
            # A leak is judged against flows that were measured: estimates (days before a new
            # meter's first reading are estimated from like days) would make them up.
            known = window.quality.reshape(n, ndays, HOURS)[:, :-1, :] != ESTIMATED
            self.min_flow = np.nanmin(np.where(known, history, np.nan), axis=2)  # [meters, history days]
        self.today = np.nan_to_num(hourly[:, -1, :])
        self.today_sum = self.today.sum(axis=1)
        self.measured_today = (self.raw_quality[:, -1, :] == MEASURED).sum(axis=1)
        self.missing_today = (self.raw_quality[:, -1, :] == MISSING).sum(axis=1)


class _quiet:
    """Silence numpy's all-NaN warnings: a meter without history simply has no forecast."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def fit_baseline(inp, sumsq, imb, valid, clean):
    """Per group, the daily imbalance its history explains: a + b·input + c·Σ input² (losses).

    Fitted on the fully measured days before the last (all valid days when fewer than
    MIN_FIT_DAYS are), then again without the days more than TRIM_SIGMAS off (an
    earlier fault). Returns (coefficients [groups, 3], the days used [groups, days]).
    """
    use = clean & valid
    use[:, -1] = False
    few = use.sum(axis=1) < MIN_FIT_DAYS
    use[few] = valid[few]
    use[:, -1] = False
    with _quiet():
        sx = np.nan_to_num(np.nanmean(np.where(use, inp, np.nan), axis=1), nan=1.0)[:, None]
        sq = np.nan_to_num(np.nanmean(np.where(use, sumsq, np.nan), axis=1), nan=1.0)[:, None]
    sx[sx <= 0], sq[sq <= 0] = 1.0, 1.0
    X = np.stack((np.ones_like(inp), inp / sx, sumsq / sq), axis=2)  # [groups, days, 3], columns near 1
    y = np.nan_to_num(imb)
    for _ in range(2):
        w = use.astype(np.float64)
        xtx = np.einsum("gdi,gd,gdj->gij", X, w, X) + RIDGE * np.eye(3)
        beta = np.linalg.solve(xtx, np.einsum("gdi,gd,gd->gi", X, w, y)[..., None])[..., 0]
        resid = y - np.einsum("gdi,gi->gd", X, beta)
        with _quiet():
            med, sigma = _robust(np.where(use, resid, np.nan), axis=1)
        use &= np.abs(resid - np.nan_to_num(med)[:, None]) <= TRIM_SIGMAS * np.nan_to_num(sigma)[:, None] + 1e-12
    return np.stack((beta[:, 0], beta[:, 1] / sx[:, 0], beta[:, 2] / sq[:, 0]), axis=1), use


class GroupRise:
    """Each group's imbalance against what its history explains, for every day of the window."""

    def __init__(self, b, s, stats):
        self.b, self.s = b, s
        d = b.daily_arrays()
        inp, imb = d["input"], d["imbalance"]
        valid = (d["completeness"] >= MIN_COMPLETENESS) & (d["unknown"] == 0) & (inp > 0)
        self.valid = valid
        hourly_in = b.input.reshape(s.n_groups, b.ndays, HOURS)
        self.coef, self._fit_days = fit_baseline(inp, (hourly_in ** 2).sum(axis=2), imb, valid,
                                                 d["completeness"] >= 1.0)
        valid &= (self._fit_days.sum(axis=1) >= MIN_FIT_TERMS)[:, None]
        a, c1, c2 = self.coef[:, 0:1], self.coef[:, 1:2], self.coef[:, 2:3]
        expected = a + c1 * inp + c2 * (hourly_in ** 2).sum(axis=2)
        hourly_expected = a / HOURS + c1 * b.input + c2 * b.input ** 2
        self.hourly_residual = b.imbalance - hourly_expected  # [groups, hours]
        with _quiet():
            typical = np.nanmedian(np.where(valid, inp, np.nan), axis=1)
            self.usual_pct = np.nan_to_num(np.nanmedian(np.where(valid, expected / np.where(inp > 0, inp, 1), np.nan),
                                                        axis=1)) * 100
        # A day is judged on its fully measured hours only (an estimate's error would go
        # straight into the imbalance), against the same hours of the history's fit days,
        # so that whatever the hourly baseline gets wrong cancels out; scaled to a day.
        full = (b.strictly_measured >= s.n_points - 0.5).reshape(s.n_groups, b.ndays, HOURS)
        self.full_hours = full
        n_full = full.sum(axis=2)
        self.day_scale = HOURS / np.maximum(n_full, 1)  # [groups, days]
        r_h = self.hourly_residual.reshape(full.shape)
        same_hours = np.einsum("gdh,gkh->gkd", r_h, full.astype(np.float64))  # day k's hours on day d
        hist = self._fit_days.copy()
        hist[:, -1] = False
        with _quiet():
            med, spread = _robust(np.where(hist[:, None, :], same_hours, np.nan), axis=2)  # [groups, days]
        own = np.einsum("gkh,gkh->gk", r_h, full)
        self.residual = (own - np.nan_to_num(med)) * self.day_scale
        floor = MIN_SIGMA_SHARE * np.nan_to_num(typical)[:, None]
        self.sigma_days = np.maximum(np.nan_to_num(spread) * self.day_scale, floor) + 1e-9
        self.input = inp
        self.imbalance = imb
        limit = np.maximum(RISE_SIGMAS * self.sigma_days, MIN_RISE_SHARE * inp)
        self.risen = valid & (n_full >= MIN_FULL_HOURS) & (self.residual > limit) & s.has_input[:, None]
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
            z = self.residual[g, k] / self.sigma_days[g, -1]
            detail = "imbalance %.2f %% of input (%.3f), usual %.2f %%, rise %.1f sigma%s" % (
                self.pct[g, k], self.imbalance[g, k], self.usual_pct[g], z,
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
        # Only the hours the rise was judged on; the forecast of an hour is its median, so a
        # day's forecast is a typical day, not one pulled up by rare busy evenings.
        full = rise.full_hours[g, days, :]  # [days, 24]
        used = (np.nan_to_num(stats.hourly[members][:, days, :]) * full).sum(axis=2)  # [members, days]
        expected = (stats.hour_forecast[members][:, None, :] * full).sum(axis=2)
        deficit = (expected - used) * rise.day_scale[g, days][None, :]
        order, score = rank_members(rise.residual[g, days], deficit, stats.sigma[members])
        today_deficit = deficit[:, -1]
        ranked = [i for i in order if today_deficit[i] > 0][:SUSPECTS_PER_GROUP]
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




def rank_members(r, deficit, sigma, picks=SUSPECTS_PER_GROUP):
    """Order members by how well their deficits explain the group's residual imbalance ``r`` [days].

    A member's score is the log-likelihood ratio of "its true use was what it reported plus
    the missing energy" against "what it reported is its usual variation", with its own
    forecast and daily deviation ``sigma``: sum over days of r·(2·deficit − r) / (2·sigma²).
    Greedy: the best member is taken, its deficit (clipped to what is left) is removed
    from ``r``, and the rest are scored again, so two thieves in one group both come up.
    ``deficit`` is [members, days]; returns (order, score at the time each was taken).
    """
    left = np.asarray(r, dtype=np.float64).copy()
    score = np.full(len(deficit), -np.inf)
    order = []
    remaining = np.ones(len(deficit), dtype=bool)
    for _ in range(min(picks, len(deficit))):
        llr = (left[None, :] * (2 * deficit - left[None, :])).sum(axis=1) / (2 * sigma ** 2)
        llr[~remaining] = -np.inf
        best = int(np.argmax(llr))
        order.append(best)
        score[best] = llr[best]
        remaining[best] = False
        left = left - np.clip(deficit[best], 0, np.maximum(left, 0))
    return order + list(np.nonzero(remaining)[0]), score


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
    """Consumers' water meters only: a leak between an input and its members shows as imbalance."""
    inputs = {m for g in model.groups.values() for m in g.inputs}
    water = np.array([m.resource == "water" and m.id not in inputs for m in model.meters.values()], dtype=bool)
    measured = stats.raw_quality[:, -1, :] == MEASURED
    flowing = np.where(measured, stats.today, np.inf).min(axis=1)
    candidates = np.nonzero(water & (stats.measured_today >= STOPPED_MIN_HOURS) & (flowing >= LEAK_MIN_FLOW))[0]
    with _quiet():
        usual_min = np.nan_to_num(np.nanpercentile(stats.min_flow[candidates], 90, axis=1))
    return [_alert("leak", meter_ids[m], group_of[m], flowing[m] * 1000,
                   "flow in every hour, at least %.1f L/h (usual minimum %.1f L/h)" % (flowing[m] * 1000, u * 1000))
            for m, u in zip(candidates, usual_min) if flowing[m] > LEAK_BASELINE_FACTOR * u]


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
        z = 0.0 if g is None else max(0.0, rise.residual[g, k] / rise.sigma_days[g, -1])
        out.append(_alert("tamper", meter_id, group, 1.0 + z,
                          "%s event; group imbalance %s" % (name, "unknown" if g is None else
                                                           "rose %.1f sigma" % z if rise.risen[g, k] else "normal")))
    return out


def _gaps(stats, meter_ids, group_of):
    lost = stats.missing_today > 1
    return [_alert("data_gap", meter_ids[m], group_of[m], stats.missing_today[m] / HOURS,
                   "%d of 24 hours never received" % stats.missing_today[m]) for m in np.nonzero(lost)[0]]
