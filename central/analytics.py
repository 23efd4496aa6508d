"""Next-day alerts: imbalance, suspects (culprits), stopped meters, leaks, tamper, data gaps.

Everything is judged against each group's and each meter's own recent past (the
``HISTORY_DAYS`` before the day), not against fixed numbers, so that the same rules
work on districts of any size and shape:

- **imbalance**: the group's imbalance rose above its own recent days, or exceeds the
  group's threshold on its measured hours. Losses are fitted per group on its fully
  measured history hours as a + b·input + c·input² (no-load and metering, proportional
  errors, I²R losses), twice (across the hours of the day, and each hour against its
  recent days, where a load that keeps to certain hours is no loss), and the group is
  judged with the fit under which its earlier days spread less (``fit_local_losses``).
  A day is judged hour by hour on the hours in which every point of the group was
  measured (an estimate's error would go straight into the imbalance), each
  against the median of the same hour on its ``REF_DAYS`` most recent days with that hour
  measured (an older fault is the group's normal by then), so that a day with gaps still
  counts on its other hours. The day's rise must reach ``RISE_SIGMAS`` deviations of its
  sum (its hours' variances and adjacent hours' covariances, ``hour_correlation``,
  calibrated on the earlier days' sums by ``qn_spread``) and ``MIN_RISE_SHARE`` of the
  input; a risen group stays risen the next day while that day's own rise is at least
  ``CONTINUE_SIGMAS``. Older faults that make the group's imbalance follow a member's use (up to
  ``OLDER_FAULTS``) are fitted on the days before and taken out first, each from its own
  onset (``older_faults``). An older magnet's capped hours, which hold its flat's use above
  the cap, are judged against capped hours of the recent days and weigh by the inverse of
  their spread (``GroupRise._capped``).
- **suspect**: in a group whose imbalance rose, every member's deficit is measured exactly
  as the rise is (the same hours against the same reference days), over the days of the
  rise, and scored by the log-likelihood ratio of "its true use was what it reported plus
  the missing energy" against "what it reported is its own variation", with the density
  of standardised deficits that the district's own meters showed in their history (so a
  flat left empty does not outrank the member whose deficit matches). To that is added
  the evidence that the rise follows the member's own readings hour by hour as one of
  the ways a meter is made to miss energy would make it (a share of its use: shunt,
  bypassed phase; a cap: magnet; a constant: bypassed fixed load), against the group's
  hourly noise and against a rise flat in every hour, which no member needs to explain
  (every member who counts each hour fits it alike), and fitted beside the member that
  explains the rise best so far (``pair_evidence``: an older fault still in the rise makes
  a day no single mechanism fits; when none explains it alone, two faults begun the same
  day, the one that comes closest, and that one beside the member the pair found). Each
  member's evidence is summed over the rise's days from its own onset (the day that gives
  it the most), so a fault that began on top of an older one is not held to the days
  before it. Up to ``SUSPECTS_PER_GROUP`` members with a deficit, or
  whose readings the missing energy followed, are listed, ranked by score; a rise no
  member's deficit explains is reported as an unmetered load.
- **stopped_meter**: a meter that used to count and reported zero (or one frozen value)
  all day, while its group's imbalance rose (as for the imbalance alert) by a good part of
  its usual consumption.
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
TRIM_SIGMAS = 4.0  # history hours this far off the first fit are left out of the second
RIDGE = 1e-6  # keeps the 3-term fit solvable when a group's load barely varies
# The robust deviation of a group's daily imbalance is never taken below this share of its
# input: class 0.5S input meters repeat to about that over a day.
MIN_SIGMA_SHARE = 2e-4
# Judged hours a day needs for a rise to count (its deviation grows as the hours get fewer),
# and measured hours for the threshold alarm (a share of the input: night hours alone
# would show the no-load losses as a large share).
MIN_FULL_HOURS = 6
THRESHOLD_MIN_HOURS = 12
# ... unless its hours' mean rise beats every judged hour of the group's earlier days, of
# which there must be this many (a record among them is then rare by chance: n/(N + n))
MIN_RECORD_HOURS = 200
# A risen group stays risen on a day whose own rise is this many deviations: by chance one
# day in six, so a false rise carries over rarely, while a persistent fault stays judged.
CONTINUE_SIGMAS = 1.0
MAX_RISE_DAYS = 3  # the rise's days that score suspects (the recent past of a persistent theft)
# A day is compared with this many of its most recent days: few enough that an older fault
# has become the group's normal, enough for a median that one odd day does not move.
REF_DAYS = 7
MIN_REF_DAYS = 3
REF_SPAN = 2 * REF_DAYS  # the reference days of an hour are looked for this far back at most
SUSPECTS_PER_GROUP = 3
MAD_TO_SIGMA = 1.4826
# A member's usual daily variation is never taken below this share of its forecast: a
# meter that has been flat so far would otherwise outweigh everyone the day it moves.
MIN_RELATIVE_SIGMA = 0.1
PULSE = 0.001  # one pulse at the default constants (1 Wh, 1 L): the resolution of an hourly value
# The density of members' standardised deficits: a kernel estimate on a grid, and the share
# of a Cauchy mixed in (a defensive mixture) so that rare but real deficits keep a tail.
KDE_RANGE, KDE_STEP, KDE_SAMPLES, MIN_KDE_SAMPLES = 40.0, 0.05, 200_000, 200
DEFENSIVE_SHARE = 0.01
STOPPED_MIN_HOURS = 20  # measured hours a day needs before "it counted nothing" means something
STOPPED_RISE_SHARE = 0.5  # share of a stopped meter's forecast its group's imbalance must rise by
LEAK_MIN_FLOW = 0.0005  # m³/h (0.5 L/h): below this no pulse meter can tell a leak from rounding
LEAK_BASELINE_FACTOR = 1.5  # the day's minimum flow must exceed the usual minimum by this factor
TAMPER_EVENTS = ("magnet", "tamper", "cover_open")
# A member's use is taken out of its group's rise when it explains at least this share of
# the rise's hour-to-hour variance on the reference days: an older fault of that member,
# not noise, then sets the group's spread.
OLDER_FAULT_SHARE = 0.5
OLDER_FAULTS = 2  # members taken out at most, one after the other: a group may have had two faults before
OLDER_FAULT_CHUNK = 20_000  # member rows fitted at a time (two weeks of hours each), so a million meters stay within memory
# A member whose meter read within 2 pulses of one ceiling in at least this share of its measured
# hours of the days before the scored ones, and clearly below it (under 0.9 of it) in at least
# CAPPED_BELOW_SHARE, is an older magnet's (an honest meter's highest hour is one spike).
CAPPED_SHARE, CAPPED_BELOW_SHARE = 0.2, 0.1
MIN_CAPPED_WEIGHT = 1e-4


def alerts(store, day, history_days=HISTORY_DAYS):
    """The alerts for ``day`` (``YYYY-MM-DD`` or a day number), as dicts (docs/central.md)."""
    day = day_number(day)
    model = store.load_model()
    window = Window.load(store, day - history_days, history_days + 1, model)
    events = store.events_between(day * 86400, (day + 1) * 86400)
    return find_alerts(model, window, events)


def find_alerts(model, window, events=(), balances=None):
    """Alerts on the last day of ``window`` (a central.balance.Window over the history and the day).

    ``balances``: the window's Balances if the caller has computed them already.
    """
    b = balances or Balances(Structure(model), window)
    s = b.structure
    meter_ids = list(model.meters)
    group_of = [m.group for m in model.meters.values()]
    stats = MeterStats(window)
    rise = GroupRise(b, s, stats)
    found = []
    found += rise.imbalance_alerts()
    found += _suspects(rise, stats, s, meter_ids)
    found += _stopped(stats, rise, s, meter_ids, group_of)
    found += _leaks(stats, window, model, meter_ids, group_of)
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
            self.daily_history = history.sum(axis=2)  # NaN where a day has an unestimated hole
            self.forecast, sigma = _robust(self.daily_history, axis=1)
            self.forecast = np.nan_to_num(self.forecast)
            self.sigma = np.maximum(np.nan_to_num(sigma), MIN_RELATIVE_SIGMA * self.forecast) + 1e-6
            self.zero_days = np.nanmean(self.daily_history <= 0, axis=1)
        self.today = np.nan_to_num(hourly[:, -1, :])
        self.today_sum = self.today.sum(axis=1)
        self.measured_today = (self.raw_quality[:, -1, :] == MEASURED).sum(axis=1)
        self.missing_today = (self.raw_quality[:, -1, :] == MISSING).sum(axis=1)

    def min_flow(self, rows, window):
        """[rows, history days]: each meter's smallest hourly flow of each day it was not estimated.

        A leak is judged against flows that were measured: estimates (days before a new
        meter's first reading are estimated from like days) would make them up.
        """
        shape = (len(rows), self.ndays, HOURS)
        known = window.quality[rows].reshape(shape)[:, :-1, :] != ESTIMATED
        with _quiet():
            return np.nanmin(np.where(known, self.hourly[rows, :-1, :], np.nan), axis=2)

    def zero_rate(self, rows):
        """Each meter's share of measured history hours that read nothing (Krichevsky–Trofimov: never 0 or 1)."""
        measured = self.raw_quality[rows, :-1] == MEASURED
        empty = (measured & (self.hourly[rows, :-1] <= PULSE)).sum(axis=(1, 2))
        return (empty + 0.5) / (measured.sum(axis=(1, 2)) + 1.0)

    def deficit_logpdf(self, rows):
        """log density of the meters ``rows``' standardised daily deficits over their history.

        What the district's own meters of a resource do (empty flats, guests, ...), mixed
        with DEFENSIVE_SHARE of a Cauchy so that no tail is ever thinner than that.
        """
        rows = rows[self.forecast[rows] > 0]
        z = (self.forecast[rows, None] - self.daily_history[rows]) / self.sigma[rows, None]
        return density_logpdf(z[np.isfinite(z)].ravel())


def density_logpdf(z):
    """log of a density estimated from the samples ``z``: a kernel estimate on a grid with a Cauchy mixed in."""
    z = np.asarray(z, dtype=np.float64)
    if len(z) > KDE_SAMPLES:
        z = np.random.default_rng(0).choice(z, KDE_SAMPLES, replace=False)
    density = KernelDensities(z[None, :])
    return lambda x: density.logpdf(np.asarray(x, dtype=np.float64).reshape(1, -1)).reshape(np.shape(x))


class _quiet:
    """Silence numpy's all-NaN warnings: a meter without history simply has no forecast."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def fit_losses(inp, imb, use):
    """Per group, the hourly imbalance its history explains: a + b·input + c·input² (losses).

    Fitted on the hours ``use`` [groups, hours] (fully measured history hours: the
    night's low load and the evening's peak pin the three terms down, which days'
    totals cannot), then again without the hours more than TRIM_SIGMAS off (an earlier
    fault). Returns the coefficients [groups, 3] for a, b, c.
    """
    with _quiet():
        scale = np.nan_to_num(np.nanmean(np.where(use, inp, np.nan), axis=1), nan=1.0)[:, None]
    scale[scale <= 0] = 1.0
    x = inp / scale  # near 1, so the normal equations stay well conditioned
    beta = _trimmed_fit(np.stack((np.ones_like(x), x, x * x), axis=2), np.nan_to_num(imb), use)
    return np.stack((beta[:, 0], beta[:, 1] / scale[:, 0], beta[:, 2] / scale[:, 0] ** 2), axis=1)


def _trimmed_fit(X, y, use):
    """Per group, least squares of y [groups, hours] on the columns X [groups, hours, k] over the
    hours ``use``, then again without the hours more than TRIM_SIGMAS off the first fit."""
    use = use.copy()
    for _ in range(2):
        w = use.astype(np.float64)
        xtx = np.einsum("gti,gt,gtj->gij", X, w, X) + RIDGE * np.eye(X.shape[2])
        beta = np.linalg.solve(xtx, np.einsum("gti,gt,gt->gi", X, w, y)[..., None])[..., 0]
        resid = y - np.einsum("gti,gi->gt", X, beta)
        with _quiet():
            med, sigma = _robust(np.where(use, resid, np.nan), axis=1)
        use &= np.abs(resid - np.nan_to_num(med)[:, None]) <= TRIM_SIGMAS * np.nan_to_num(sigma)[:, None] + 1e-12
    return beta


def fit_local_losses(inp, imb, use):
    """The losses a + b·input + c·input² as ``fit_losses``, fitted as the rise is taken.

    Each hour of ``use`` [groups, hours] against the median of the same hour on its
    ``REF_DAYS`` most recent days with it used (``_reference``): b and c from how that hour's
    imbalance then moves with its input. A day's rise is each hour less the same reference,
    so only b and c count in it, through those same changes of the input. Fitted on the
    hours as they are (``fit_losses``), a load that keeps to certain hours and no member
    shows (an unmetered evening load, 10 days older) is taken for losses growing with the
    input, which is high in those hours: b comes out off, and that error times the input's
    day-to-day change is in every later hour's rise (detect seed 2 E329: an hour's deviation
    0.17 kWh there, 0.008 here; a subtraction rose 2 deviations there, 41 here).
    Against each hour's recent days an older fault's step moves only the few days before
    the reference has caught up with it, and those hours are more than TRIM_SIGMAS off: the
    second fit leaves them out. ``a``: the median of what is left. Returns [groups, 3].
    """
    G, T = inp.shape
    D = T // HOURS
    with _quiet():
        scale = np.nan_to_num(np.nanmean(np.where(use, inp, np.nan), axis=1), nan=1.0)[:, None]
    scale[scale <= 0] = 1.0
    x = (inp / scale).reshape(G, D, HOURS)  # near 1, so the normal equations stay well conditioned
    y = np.nan_to_num(imb).reshape(G, D, HOURS)
    used = use.reshape(G, D, HOURS)
    dev = np.zeros((3, G, D, HOURS))  # y, x and x² against each hour's recent days
    fit = np.zeros((G, D, HOURS), dtype=bool)
    for t in range(1, D):
        refs, fit[:, t] = _reference(used, t)
        fit[:, t] &= used[:, t]
        for v, series in zip(dev, (y, x, x * x)):
            lo = t - refs.shape[1]
            v[:, t] = np.where(fit[:, t], series[:, t] - np.nan_to_num(masked_median(series[:, lo:t], refs)), 0.0)
    X = np.stack((dev[1].reshape(G, T), dev[2].reshape(G, T)), axis=2)
    bc = _trimmed_fit(X, dev[0].reshape(G, T), fit.reshape(G, T))
    xs = x.reshape(G, T)
    with _quiet():
        a = np.nan_to_num(np.nanmedian(np.where(use, np.nan_to_num(imb) - bc[:, 0:1] * xs - bc[:, 1:2] * xs * xs,
                                                np.nan), axis=1))
    return np.stack((a, bc[:, 0] / scale[:, 0], bc[:, 1] / scale[:, 0] ** 2), axis=1)


class GroupRise:
    """Each group's imbalance on its last days against its own recent days, and how sure that is.

    A day is judged on its hours in which every point of the group was measured (an
    estimate's error would go straight into the imbalance), after the loss fit. The same
    hours of each earlier day in which they were all measured too give that day's sum;
    the rise is the day's sum minus the median of its ``REF_DAYS`` most recent such days
    (so an earlier fault that has become the group's normal is no rise), scaled to a
    day. Its deviation is that of a sum of the day's judged hours, each adjacent pair of
    them correlated as the group's hours are (``hour_correlation``), calibrated on the
    earlier days' sums (``qn_spread``: an older fault's few days do not set the scale).
    """

    def __init__(self, b, s, stats):
        self.b, self.s = b, s
        d = b.daily_arrays()
        inp, imb = d["input"], d["imbalance"]
        G, D = s.n_groups, b.ndays
        valid = (d["completeness"] >= MIN_COMPLETENESS) & (d["unknown"] == 0) & (inp > 0)
        hourly_in = b.input.reshape(G, D, HOURS)
        full = (b.strictly_measured >= s.n_points - 0.5).reshape(G, D, HOURS) & s.has_input[:, None, None]
        history = full.copy()
        history[:, -1, :] = False
        # fitted to input − members − equipment, not to the imbalance: the configured loss
        # model scales by each day's mean load, which real I²R losses do not
        gap = b.imbalance + b.losses
        first = max(D - MAX_RISE_DAYS, 1)
        # two fits of the losses, each group judged with the one its earlier days' rises spread
        # less under (``fit_losses``: across the hours of the day, where a share of a
        # member's use an older fault hides stays for ``older_faults`` to take out;
        # ``fit_local_losses``: each hour against its recent days, where a load that keeps to
        # certain hours is no loss); the days scored are not used to choose
        self.full_hours = full
        self.judged = np.zeros((G, D, HOURS), dtype=bool)
        self.refs = {}
        best = None
        for coef in (fit_losses(b.input, gap, history.reshape(G, D * HOURS)),
                     fit_local_losses(b.input, gap, history.reshape(G, D * HOURS))):
            a, c1, c2 = coef[:, 0:1], coef[:, 1:2], coef[:, 2:3]
            excess = (gap - (a + c1 * b.input + c2 * b.input ** 2)).reshape(G, D, HOURS)
            # every day's rise hour by hour, each hour against the same hour of its most recent
            # days with it fully measured (so a day with gaps still counts on its other hours)
            hourly_rise = np.zeros((G, D, HOURS))
            for t in range(1, D):
                hourly_rise[:, t], self.judged[:, t], refs = _hourly_rise(excess, full, t)
                if t >= first:
                    self.refs[t] = refs
            # the spread of the earlier days' sums, each in units of its judged hours (as below)
            n = self.judged[:, 1:first].sum(axis=2)
            unit = np.where(n > 0, hourly_rise[:, 1:first].sum(axis=2) / np.sqrt(np.maximum(n, 1)), np.nan)
            spread = np.nan_to_num(qn_spread(unit), nan=np.inf)
            if best is None:
                self.coef, self.hourly_rise, best = coef, hourly_rise, spread
            else:  # the smaller of two spreads is a little small: false alerts stay ≤ 1 (benchmarks.md)
                better = spread < best
                self.coef = np.where(better[:, None], coef, self.coef)
                self.hourly_rise = np.where(better[:, None, None], hourly_rise, self.hourly_rise)
        a, c1, c2 = self.coef[:, 0:1], self.coef[:, 1:2], self.coef[:, 2:3]
        losses = b.losses.reshape(G, D, HOURS).sum(axis=2)
        expected = a * HOURS + c1 * inp + c2 * (hourly_in ** 2).sum(axis=2) - losses
        with _quiet():
            typical = np.nan_to_num(np.nanmedian(np.where(valid, inp, np.nan), axis=1))
            self.usual_pct = np.nan_to_num(np.nanmedian(np.where(valid, expected / np.where(inp > 0, inp, 1), np.nan),
                                                        axis=1)) * 100
        # an older magnet's capped hours hold its flat's use above the cap, which no reading
        # shows: they are judged against their own kind of hours and weigh less (``_capped``)
        self.capped = self._capped(stats, gap, full, first)
        # an older fault that follows a member's use is the group's normal: judged without it
        self.hourly_rise -= older_faults(self.hourly_rise, self.judged, stats, s, first)
        n_judged = self.judged.sum(axis=2)
        plain = self.hourly_rise.sum(axis=2)  # the judged hours' sum, each hour alike
        sums, weights = plain.copy(), n_judged.astype(np.float64)
        # a day's sum over its judged hours spreads as their variances and the covariances of
        # adjacent hours add up (``hour_correlation``): hourly values derived from a register
        # share its rounding at each hour's edge, so a run of hours sums to two edges' error
        # and a day split by gaps into several runs spreads more than one of as many hours
        rho = hour_correlation(self.hourly_rise[:, 1:first], self.judged[:, 1:first])
        pairs = (self.judged[:, :, 1:] & self.judged[:, :, :-1]).sum(axis=2)
        model_sd = np.sqrt(n_judged + 2 * pairs * rho[:, None])  # in units of one hour's deviation
        if len(self.capped[0]):
            # a weighted sum, each hour by the inverse of its kind's variance: an hour of weight w
            # adds w to the sum's variance (in units of an uncapped hour's), adjacent ones ρ·√(w·w')
            gs, w = self.capped[0], self.hour_weight(self.capped[0])
            sums[gs] = (w * self.hourly_rise[gs]).sum(axis=2)
            weights[gs] = w.sum(axis=2)
            model_sd[gs] = np.sqrt(np.maximum(weights[gs] + 2 * rho[gs, None] * np.sqrt(w[:, :, 1:] * w[:, :, :-1]).sum(axis=2), 0))
        # the earlier days' sums against that model calibrate it (what the model leaves out:
        # longer lags, whole-day effects), by Qn (``qn_spread``): an earlier fault's few days
        # do not set it, and a month's days estimate it well enough for 5 deviations
        unit = np.where(n_judged > 0, sums / np.maximum(model_sd, 1e-3), np.nan)
        self.residual = np.zeros((G, D))
        self.sigma_days = np.full((G, D), np.inf)
        self.hour_sigma = np.full((G, D), np.inf)
        floor = MIN_SIGMA_SHARE * typical
        for t in range(first, D):
            spread = np.nan_to_num(qn_spread(unit[:, :t]), nan=np.inf)
            n = np.where(n_judged[:, t] > 0, weights[:, t], 1.0)  # the hours' weight: their number, unless capped
            self.residual[:, t] = sums[:, t] * HOURS / n
            self.sigma_days[:, t] = np.maximum(spread * model_sd[:, t] * HOURS / n, floor) + 1e-9
            self.hour_sigma[:, t] = spread  # one hour's deviation: the model's unit
        self.input, self.imbalance, self.valid = inp, imb, valid
        limit = np.maximum(RISE_SIGMAS * self.sigma_days, MIN_RISE_SHARE * inp)
        # a day with fewer judged hours (other members' lost hours) counts only if the mean of
        # its hours is beyond every hour of the group's earlier days in the window (a record:
        # by chance at most n/(N + n) for n hours after N, whatever the hours' distribution)
        enough = n_judged >= MIN_FULL_HOURS
        day_max = np.where(self.judged, self.hourly_rise, -np.inf).max(axis=2)  # [groups, days]
        for t in range(first, D):
            few = (n_judged[:, t] > 0) & (n_judged[:, t] < MIN_FULL_HOURS)
            enough[:, t] |= few & (plain[:, t] / np.maximum(n_judged[:, t], 1) > day_max[:, 1:t].max(axis=1)) \
                & (n_judged[:, 1:t].sum(axis=1) >= MIN_RECORD_HOURS)
        self.risen = enough & (self.residual > limit) & s.has_input[:, None]
        # a rise goes on while the day's own rise is positive by CONTINUE_SIGMAS and the days'
        # sum keeps MIN_RISE_SHARE of their input: a persistent theft may take less on its next
        # day (a magnet's cap reached in fewer hours), and its suspects are then ranked on both.
        # Judged on any hours: their deviation, scaled to the hours, is rough in its far tail (what
        # MIN_FULL_HOURS guards a new rise against), not at 1 deviation
        for t in range(first + 1, D):
            self.risen[:, t] |= self.risen[:, t - 1] & (n_judged[:, t] > 0) & (
                self.residual[:, t] > CONTINUE_SIGMAS * self.sigma_days[:, t]) & (
                self.residual[:, t - 1] + self.residual[:, t] > MIN_RISE_SHARE * (inp[:, t - 1] + inp[:, t]))
        # threshold: on the measured hours only, so an estimate never raises an alarm
        full_in = (hourly_in * full).sum(axis=2)
        full_imb = (b.imbalance.reshape(G, D, HOURS) * full).sum(axis=2)
        n_full = full.sum(axis=2)
        self.full_pct = np.where((n_full >= THRESHOLD_MIN_HOURS) & (full_in > 0),
                                 full_imb / np.where(full_in > 0, full_in, 1) * 100, 0.0)
        self.pct = np.where(inp > 0, imb / np.where(inp > 0, inp, 1) * 100, 0.0)

    def _capped(self, stats, gap, full, first):
        """Groups with an older magnet: (groups, capped hours [groups, days, 24], weight of a capped hour).

        A magnet caps its meter: in the hours its flat used more than the cap the group's rise
        holds that excess, which no reading shows and which spreads 10–30× the group's own
        hours (detect seed 1 E48: 0.11 kWh an hour against 0.004 below the cap). Its member
        reads at one ceiling in those hours (``capped_members``). Each hour is judged against
        the same hour of its recent days of the same kind (capped or not: a median over both
        would carry the excess into the hours below the cap), and the day's sum weighs each
        hour by the inverse of its kind's variance on the earlier days, so a new theft shows
        in the quiet hours below the cap (E48's new bypass: 2.3 → 16.8 deviations).
        """
        s, b = self.s, self.b
        gs, ms, ceilings = capped_members(stats, s, max(first - REF_DAYS, 1), first)
        G, D = len(gs), b.ndays
        if not G:
            return gs, np.zeros((0, D, HOURS), dtype=bool), np.zeros(0)
        capped = (np.nan_to_num(stats.hourly[ms]) >= ceilings[:, None, None] - 2 * PULSE) \
            & (stats.raw_quality[ms] == MEASURED)
        a, c1, c2 = self.coef[gs, 0:1], self.coef[gs, 1:2], self.coef[gs, 2:3]
        excess = (gap[gs] - (a + c1 * b.input[gs] + c2 * b.input[gs] ** 2)).reshape(G, D, HOURS)
        rise, judged = np.zeros((G, D, HOURS)), np.zeros((G, D, HOURS), dtype=bool)
        for t in range(1, D):
            below, judged_below, (lo, refs_below) = _hourly_rise(excess, full[gs] & ~capped, t)
            above, judged_above, (_, refs_above) = _hourly_rise(excess, full[gs] & capped, t)
            rise[:, t] = np.where(judged_below, below, above)
            judged[:, t] = judged_below | judged_above
            if t in self.refs:
                refs = self.refs[t][1].copy()
                refs[gs] = np.where(capped[:, t, None, :], refs_above, refs_below)
                self.refs[t] = (lo, refs)
        self.hourly_rise[gs], self.judged[gs] = rise, judged
        with _quiet():
            _, quiet = _robust(np.where(judged & ~capped, rise, np.nan)[:, 1:first].reshape(G, -1), axis=1)
            _, loud = _robust(np.where(judged & capped, rise, np.nan)[:, 1:first].reshape(G, -1), axis=1)
        weight = np.nan_to_num(quiet ** 2 / loud ** 2, nan=1.0, posinf=1.0)
        return gs, capped, np.clip(weight, MIN_CAPPED_WEIGHT, 1.0)

    def hour_weight(self, gs):
        """[len(gs), days, 24]: each judged hour's weight in its group's day (1, or less in an older magnet's capped hours)."""
        w = self.judged[gs].astype(np.float64)
        where = {g: i for i, g in enumerate(self.capped[0])}
        for j, g in enumerate(gs):
            if g in where:
                i = where[g]
                w[j] *= np.where(self.capped[1][i], self.capped[2][i], 1.0)
        return w

    def quiet_hours(self, g, t):
        """Group g's judged hours of day t in which no older magnet's meter sat at its cap: where
        the rise is what the group's own noise allows, so a member's mechanism can be fitted to it
        (in the capped hours the magnet's flat's use above the cap, which no reading shows, is in it)."""
        where = np.nonzero(self.capped[0] == g)[0]
        return self.judged[g, t] & ~self.capped[1][where[0], t] if len(where) else self.judged[g, t]

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
        over = (np.abs(self.full_pct[:, k]) > s.threshold_pct) & s.has_input
        for g in np.nonzero(self.risen[:, k] | over)[0]:
            z = self.residual[g, k] / self.sigma_days[g, k]
            detail = "imbalance %.2f %% of input (%.3f), usual %.2f %%, rise %.1f sigma%s" % (
                self.pct[g, k], self.imbalance[g, k], self.usual_pct[g], z,
                "; %.2f %% on its measured hours, over the %.1f %% threshold" % (self.full_pct[g, k], s.threshold_pct[g])
                if over[g] else "")
            out.append(_alert("imbalance", s.group_ids[g], s.group_ids[g], max(z, abs(self.full_pct[g, k])), detail))
        return out


def _hourly_rise(excess, full, t):
    """Day t's rise hour by hour [groups, 24], the hours judged, and the reference days.

    Each fully measured hour of day t is compared with the median of the same hour on its
    ``REF_DAYS`` most recent earlier days on which that hour was fully measured (looked
    for within ``REF_SPAN`` days). Returns (rise, judged, (first day, refs [groups, days, 24])).
    """
    refs, enough = _reference(full, t)
    lo = t - refs.shape[1]
    level = masked_median(excess[:, lo:t, :], refs)
    judged = full[:, t, :] & enough
    return np.where(judged, excess[:, t, :] - np.nan_to_num(level), 0.0), judged, (lo, refs)


def _reference(full, t):
    """The reference days of each hour of day t: (refs [groups, days t − span … t − 1, 24], enough [groups, 24]).

    For each hour, its ``REF_DAYS`` most recent earlier days on which it was ``full``, looked
    for within ``REF_SPAN`` days; ``enough``: at least ``MIN_REF_DAYS`` of them.
    """
    lo = max(0, t - REF_SPAN)
    past = full[:, lo:t, :]
    newer = np.cumsum(past[:, ::-1], axis=1)[:, ::-1]  # measured days from day k to t-1, per hour
    refs = past & (newer <= REF_DAYS)
    return refs, refs.sum(axis=1) >= MIN_REF_DAYS


def older_faults(rise, judged, stats, s, first):
    """[groups, days, 24]: the part of each group's hourly rise that follows its members' own use.

    An older fault of a member (a shunt, a magnet, a bypassed phase) makes the group's
    imbalance move with that member's use, hour by hour and day by day: once it is the
    group's normal it is no rise, but its spread buries a new theft's. Over the
    ``REF_DAYS`` days before the days scored (so a new fault is never fitted away), each
    member's deviation from its own median of the same hour on its ``REF_DAYS`` days before
    (as each day's rise is the group's excess less the median of its recent days: a fixed
    median would leave β times the drift of that median in every day) is fitted to the
    group's hourly rise (r ≈ β·deviation, least squares). The member whose fit removes the
    most is taken out if it removes at least ``OLDER_FAULT_SHARE`` of the rise's sum of
    squares there: then that member's use, not noise, is what the group's imbalance does,
    and the new theft is judged without it. Then the next member on what is left, up to
    ``OLDER_FAULTS`` (a group may have had two faults before). Each is taken out from its
    own onset on, the day from which taking it out gains the most in all (CUSUM of the
    days' gains): the earlier days that calibrate the group's spread are quiet too, and the
    days before the fault get no member's noise added. An honest member's class error
    explains a sliver, so quiet groups are left as they are.
    """
    lo = max(first - REF_DAYS, 1)
    n = len(s.member_m)
    out = np.zeros_like(rise)
    if n == 0 or first - lo < MIN_REF_DAYS:
        return out  # too few days before the scored ones to tell a fault's pattern from chance
    taken = np.zeros(n, dtype=bool)
    since = max(lo - REF_DAYS, 0)
    fitted = np.arange(n)  # the members fitted: then only those of groups where one was taken out
    for _ in range(OLDER_FAULTS):
        left = np.where(judged[:, lo:first], rise[:, lo:first] - out[:, lo:first], 0.0)
        gain, beta = np.zeros(n), np.zeros(n)
        for a in range(0, len(fitted), OLDER_FAULT_CHUNK):  # bounded memory on a million meters
            part = fitted[a:a + OLDER_FAULT_CHUNK]
            g, m = s.member_g[part], s.member_m[part]
            dev = _recent_deviation(np.nan_to_num(stats.hourly[m, since:first]), lo - since)
            dev = np.where(judged[g, lo:first], dev, 0.0)
            cross = (dev * left[g]).sum(axis=(1, 2))
            beta[part] = cross / np.maximum((dev * dev).sum(axis=(1, 2)), PULSE ** 2)
            gain[part] = cross * beta[part]
        total = (left ** 2).sum(axis=(1, 2))
        # a meter that misses energy makes the imbalance rise with its use: β > 0
        telling = (beta > 0) & (gain >= OLDER_FAULT_SHARE * total[s.member_g]) & ~taken
        if not telling.any():
            break
        # per group the member whose fit removes the most (pairs are sorted by group)
        pick = np.lexsort((np.where(telling, gain, -1.0), s.member_g))
        chosen = pick[np.r_[s.member_g[pick][1:] != s.member_g[pick][:-1], True]]
        chosen = chosen[telling[chosen]]
        taken[chosen] = True
        g, m = s.member_g[chosen], s.member_m[chosen]
        fitted = np.nonzero(np.isin(s.member_g, g))[0]
        part = np.zeros((len(chosen),) + rise.shape[1:])
        part[:, 1:] = beta[chosen, None, None] * _recent_deviation(np.nan_to_num(stats.hourly[m]), 1) * judged[g, 1:]
        # its onset: the day from which taking it out gains the most, up to the fitted days
        before = rise[g, :first] - out[g, :first]
        daily = ((before ** 2) - (before - part[:, :first]) ** 2).sum(axis=2)
        gains = np.cumsum(daily[:, ::-1], axis=1)[:, ::-1][:, 1:lo + 1]  # the days from j on, j = 1 … lo
        onset = 1 + np.argmax(gains, axis=1)
        part[np.arange(rise.shape[1])[None, :] < onset[:, None]] = 0.0
        out[g] += part
    return out


def capped_members(stats, s, lo, first):
    """Members that read at one ceiling in many hours of the days lo … first − 1, as a magnet's meter does.

    At least CAPPED_SHARE of a member's measured hours within 2 pulses of its highest, and at
    least CAPPED_BELOW_SHARE under 0.9 of it (a frozen register repeats one value in every hour;
    an honest meter's highest hour is a single spike). Per group the one most often there.
    Returns (groups, meter rows, ceilings).
    """
    n = len(s.member_m)
    share, ceiling = np.zeros(n), np.zeros(n)
    for a in range(0, n, OLDER_FAULT_CHUNK):  # bounded memory on a million meters
        m = s.member_m[a:a + OLDER_FAULT_CHUNK]
        measured = stats.raw_quality[m, lo:first] == MEASURED
        x = np.where(measured, np.nan_to_num(stats.hourly[m, lo:first]), -np.inf)
        top = x.max(axis=(1, 2))
        count = np.maximum(measured.sum(axis=(1, 2)), 1)
        at = (x >= top[:, None, None] - 2 * PULSE).sum(axis=(1, 2)) / count
        below = (measured & (x < 0.9 * top[:, None, None])).sum(axis=(1, 2)) / count
        ok = (top > 2 * PULSE) & (at >= CAPPED_SHARE) & (below >= CAPPED_BELOW_SHARE)
        share[a:a + len(m)], ceiling[a:a + len(m)] = np.where(ok, at, 0.0), top
    pick = np.lexsort((share, s.member_g))  # per group the member most often at its ceiling (pairs sorted by group)
    chosen = pick[np.r_[s.member_g[pick][1:] != s.member_g[pick][:-1], True]] if n else pick
    chosen = chosen[share[chosen] > 0]
    return s.member_g[chosen], s.member_m[chosen], ceiling[chosen]


def _recent_deviation(x, start):
    """x [rows, days, 24] → [rows, days − start, 24]: each day from ``start`` on, less the median
    of the same hour on its ``REF_DAYS`` days before (as few as there are)."""
    return np.stack([x[:, u] - np.median(x[:, max(u - REF_DAYS, 0):u], axis=1)
                     for u in range(start, x.shape[1])], axis=1)


def hour_correlation(rise, judged):
    """Per group, the correlation of two adjacent judged hours' rises.

    Robust (from median absolute deviations, so a spiky hour does not set it): from the
    pairs of adjacent judged hours, (var(x_h + x_h+1) − var(x_h − x_h+1)) / 4 over var(x_h).
    Rounding at a register's resolution makes adjacent hours' errors cancel (down to −1/2:
    a run of hours then sums to its two edges' error); slow changes make them alike (up
    to +1/2 here, an MA(1)'s bounds, so every sum's variance stays positive); 0 where the
    hours do not vary. ``rise``, ``judged``: [groups, days, 24].
    """
    pair = judged[:, :, 1:] & judged[:, :, :-1]
    G = len(rise)
    with _quiet():
        _, sd = _robust(np.where(judged, rise, np.nan).reshape(G, -1), axis=1)
        _, sd_sum = _robust(np.where(pair, rise[:, :, 1:] + rise[:, :, :-1], np.nan).reshape(G, -1), axis=1)
        _, sd_diff = _robust(np.where(pair, rise[:, :, 1:] - rise[:, :, :-1], np.nan).reshape(G, -1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (sd_sum ** 2 - sd_diff ** 2) / (4 * sd ** 2)
    return np.clip(np.nan_to_num(rho, nan=0.0, posinf=0.0, neginf=0.0), -0.5, 0.5)


# Qn's consistency factor at the normal (1 / (√2·Φ⁻¹(5/8))) and its small-sample corrections
# (Croux & Rousseeuw 1992), so that its mean is the deviation for any number of days
QN_FACTOR = 2.2219
QN_SMALL = {2: 0.399, 3: 0.994, 4: 0.512, 5: 0.844, 6: 0.611, 7: 0.857, 8: 0.669, 9: 0.872}
QN_CHUNK = 20_000  # rows at a time: a month's days are 400 distances a row


def qn_spread(x):
    """Per row of ``x`` [rows, n] (NaN ignored), Rousseeuw and Croux's Qn estimate of the deviation.

    The k-th smallest of the rows' pairwise distances, k = h(h − 1)/2 with h = n//2 + 1:
    robust to nearly half the values, like the median absolute deviation, but with 82 %
    efficiency at the normal against its 37 %. The rise's threshold is a multiple of this
    spread taken from a month of days, so its own error decides the false alarms: with 25
    normal days, a day beyond 5 estimated deviations occurs by chance 3.5·10⁻⁴ of the time
    under the median absolute deviation, 4·10⁻⁵ under Qn (simulated). NaN where n < 2.
    """
    rows, n = x.shape
    m = np.isfinite(x).sum(axis=1)
    h = m // 2 + 1
    k = np.maximum(h * (h - 1) // 2, 1)
    q = np.full(rows, np.nan)
    i, j = np.triu_indices(n, 1)
    for a in range(0, rows if len(i) else 0, QN_CHUNK):  # n(n − 1)/2 distances a row: bounded memory
        part = slice(a, a + QN_CHUNK)
        dist = np.sort(np.abs(x[part, i] - x[part, j]), axis=1)  # pairs with a NaN sort last
        q[part] = np.take_along_axis(dist, np.minimum(k[part] - 1, len(i) - 1)[:, None], axis=1)[:, 0]
    small = np.array([QN_SMALL.get(v, 1.0) for v in range(10)])
    correction = np.where(m <= 9, small[np.minimum(m, 9)], np.where(m % 2, m / (m + 1.4), m / (m + 3.8)))
    return np.where(m >= 2, QN_FACTOR * correction * q, np.nan)


def masked_median(x, mask):
    """The median along axis 1 of the values of ``x`` where ``mask``; NaN where none."""
    mask = np.broadcast_to(mask, x.shape)
    v = np.sort(np.where(mask, x, np.inf), axis=1)  # the masked-out values sort last
    n = mask.sum(axis=1)
    low = np.take_along_axis(v, np.maximum((n - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(v, np.maximum(n // 2, 0)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (low + high) / 2, np.nan)


def _suspects(rise, stats, s, meter_ids):
    """Rank the members of every risen group by how well their deficit explains the rise."""
    out = []
    k = rise.b.ndays - 1
    starts = np.searchsorted(s.member_g, np.arange(s.n_groups + 1))
    densities = {}  # per resource: water meters stand still most hours, electricity meters never do
    for g in np.nonzero(rise.risen[:, k])[0]:
        members = s.member_m[starts[g]:starts[g + 1]]
        days = rise.rise_days(g)
        if len(members) == 0 or not days:
            continue
        resource = s.resources[g]
        if resource not in densities:
            densities[resource] = stats.deficit_logpdf(np.unique(s.member_m[np.array(s.resources)[s.member_g] == resource]))
        # each member's deficit on the rise's days, measured exactly as the group's rise is:
        # on the same judged hours, against the median of the same reference days
        # (and, each day, how well the day's hourly rise follows its own readings)
        deficit, scale = np.empty((len(members), len(days))), np.empty(len(days))
        share, fit = np.empty((len(members), len(days))), np.empty((len(members), len(days)))
        empty_rate = stats.zero_rate(members)
        # what each member's own use looks like (before the rise's days), to judge what a
        # mechanism says its true use was
        use = UseModel(np.nan_to_num(stats.hourly[members, :days[0]]))
        for j, t in enumerate(days):
            hours = rise.judged[g, t]
            lo, refs = rise.refs[t]
            level = masked_median(stats.hourly[members, lo:t][:, :, hours], refs[g][None, :, hours])
            scale[j] = HOURS / max(hours.sum(), 1)
            deficit[:, j] = (level - stats.hourly[members, t][:, hours]).sum(axis=1) * scale[j]
            day, measured = stats.hourly[members, t], stats.raw_quality[members, t] == MEASURED
            empty, counted = empty_hours_evidence(day, measured, empty_rate), (measured & (day > PULSE)).any(axis=1)
            quiet = rise.quiet_hours(g, t)
            args = (rise.hourly_rise[g, t, quiet], day[:, quiet], rise.hour_sigma[g, t])
            subtraction = use.subtraction(day, measured)  # the members' day as read, judged once for both fits
            # a magnet's cap is the member's highest reading of its whole measured day: on a day
            # judged on few hours, the highest of those hours is no cap
            peak = np.where(measured, np.nan_to_num(day), -np.inf).max(axis=1)
            fit[:, j] = mechanism_evidence(*args, empty, use=subtraction, counted=counted, raw=True, peak=peak)
            share[:, j] = np.maximum(fit[:, j], 0.0)
            # the member that explains the rise best so far may be an older fault still in it:
            # each other one is also fitted beside it
            partner = int(np.argmax(share[:, :j + 1].sum(axis=1)))
            alone = share[partner, :j + 1].sum() > 0
            if not alone:
                # none explains it alone (two faults begun together: each one's mechanism misfits
                # by the other's missing energy): the one that comes closest is fitted beside each other
                # (not a meter that counted nothing: a stopped meter's missing energy is all its use,
                # which no mechanism constrains, so it comes "closest" with nothing to fit)
                partner = int(np.argmax(np.where(counted, fit[:, :j + 1].sum(axis=1), -np.inf)))
            # (a guessed partner's pair must also beat what the other explains without it)
            pair = pair_evidence(*args, partner, empty, use=subtraction, counted=counted, peak=peak, against_own=not alone)
            share[:, j] = np.maximum(share[:, j], pair)
            if fit[partner, j] <= 0 and pair.max() > 0:
                # ... and the member the pair found is fitted beside each other in turn, so the
                # partner, which explains nothing alone that day, gets its share of the pair's fit
                share[:, j] = np.maximum(share[:, j], pair_evidence(*args, int(np.argmax(pair)), empty, use=subtraction,
                                                                    counted=counted, peak=peak, against_own=not alone))
        # a deficit scaled up from part of a day varies more than a whole day's: by √(24/hours)
        order, score = rank_members(rise.residual[g, days], deficit, stats.sigma[members][:, None] * np.sqrt(scale),
                                    logpdf=densities[resource], evidence=share)
        today = deficit[:, -1]
        # a shunted member who used more than usual that day reports no less than usual, but
        # the missing energy still follows its readings hour by hour
        ranked = [i for i in order if today[i] > 0 or share[i, -1] > 0][:SUSPECTS_PER_GROUP]
        group_id = s.group_ids[g]
        if not ranked:
            out.append(_alert("imbalance", group_id, group_id, 0.0,
                              "no member's deficit explains the rise: an unmetered load or a fault upstream"))
            continue
        for rank, i in enumerate(ranked, 1):
            m = members[i]
            out.append(_alert("suspect", meter_ids[m], group_id, score[i],
                              "rank %d: %.3f below its recent days, group imbalance rose by %.3f over %d day(s)%s; "
                              "reported %.3f against a forecast of %.3f" % (
                                  rank, today[i], rise.residual[g, k], len(days),
                                  ", hour by hour what its meter missed" if share[i, -1] > 0 else "",
                                  stats.today_sum[m], stats.forecast[m])))
    return out


class KernelDensities:
    """One density per row of ``samples`` [rows, n], for many rows at once.

    A Gaussian kernel at Silverman's bandwidth over a histogram on a grid of KDE_STEP
    within ±KDE_RANGE, with a DEFENSIVE_SHARE of a Cauchy mixed in (so that rare but real
    values keep a tail); ``logpdf(x)`` [rows, k] interpolates each row's.
    """

    def __init__(self, samples):
        rows, n = samples.shape
        grid = np.arange(-KDE_RANGE, KDE_RANGE + KDE_STEP / 2, KDE_STEP)
        density = np.zeros((rows, len(grid)))
        if n >= MIN_KDE_SAMPLES:
            q75, q25 = np.percentile(samples, [75, 25], axis=1)
            spread = np.minimum(samples.std(axis=1), (q75 - q25) / 1.349)
            spread = np.where(spread > 0, spread, 1.0)
            # Silverman's rule, the kernel never wider than the grid (samples spread far beyond it)
            bandwidth = np.clip(0.9 * spread * n ** -0.2, KDE_STEP, KDE_RANGE / 8)
            bins = np.rint((np.clip(samples, grid[0], grid[-1]) - grid[0]) / KDE_STEP).astype(np.int64)
            counts = np.bincount((bins + len(grid) * np.arange(rows)[:, None]).ravel(),
                                 minlength=rows * len(grid)).reshape(rows, len(grid)).astype(np.float64)
            reach = int(np.ceil(4 * bandwidth.max() / KDE_STEP))
            offsets = np.arange(-reach, reach + 1)
            weights = np.exp(-0.5 * (offsets[None, :] * KDE_STEP / bandwidth[:, None]) ** 2)
            weights *= np.abs(offsets)[None, :] * KDE_STEP <= 4 * bandwidth[:, None]  # each row's own reach
            weights /= weights.sum(axis=1, keepdims=True)
            padded = np.pad(counts, ((0, 0), (reach, reach)))
            for j, o in enumerate(offsets):
                density += weights[:, j:j + 1] * padded[:, reach - o:reach - o + len(grid)]
            density /= n * KDE_STEP
        self.grid = grid
        self.log_mixed = np.log((1 - DEFENSIVE_SHARE) * density + DEFENSIVE_SHARE / (np.pi * (1 + grid ** 2)))

    def logpdf(self, x):
        pos = np.clip((x - self.grid[0]) / KDE_STEP, 0, len(self.grid) - 1)
        low = np.minimum(np.floor(pos).astype(np.int64), len(self.grid) - 2)
        frac = pos - low
        inside = (1 - frac) * np.take_along_axis(self.log_mixed, low, axis=1) \
            + frac * np.take_along_axis(self.log_mixed, low + 1, axis=1)
        outside = np.log(DEFENSIVE_SHARE / (np.pi * (1 + x * x)))
        return np.where(np.abs(x) <= KDE_RANGE, inside, outside)


class UseModel:
    """Each member's own habits of hourly use, to say how plausible a supposed true day of use is.

    On a log scale (use spreads multiplicatively), an hour's use is the member's usual level
    of that hour of the day, plus the day's own level (a busy or a quiet day moves every
    hour alike), plus the hour's own variation: log(x + δ) = μ_h + L + e. From its history:
    μ_h the median of each hour of the day, each day's level L the median of its hours'
    deviations, and the densities of L and of e, each standardised by its robust spread,
    e's a kernel estimate with a Cauchy tail (``density_logpdf``; no family of
    distributions is assumed), L's a Cauchy (a month gives too few days for more). δ is
    the meter's resolution (its smallest reading above nothing). A supposed day is scored
    at its own level (the median of its hours' deviations): what tells a meter that misses
    a constant is the day's shape (its quiet hours fall most), which no level explains.
    Consecutive hours of one flat are correlated, so the hours' sum of log densities is
    tempered by (1 − ρ)/(1 + ρ), ρ the member's lag-1 correlation of e (the effective
    number of independent hours).
    """

    def __init__(self, history):
        # history [members, days, 24]
        positive = np.where(history > PULSE / 2, history, np.inf).min(axis=(1, 2))
        self.delta = np.where(np.isfinite(positive), np.maximum(positive, PULSE), PULSE)[:, None]  # [members, 1]
        y = self._log(history.reshape(len(history), -1)).reshape(history.shape)
        self.mu = np.median(y, axis=1)  # [members, 24]
        level = np.median(y - self.mu[:, None, :], axis=2)  # [members, days]
        self.level, level_spread = _robust(level, axis=1)
        self.level_spread = np.maximum(level_spread, 0.02)
        e = y - self.mu[:, None, :] - level[:, :, None]
        self.spread = np.maximum(MAD_TO_SIGMA * np.median(np.abs(e), axis=(1, 2)), 0.05)  # [members]
        z = e / self.spread[:, None, None]
        zc = z - z.mean(axis=(1, 2), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = (zc[:, :, 1:] * zc[:, :, :-1]).sum(axis=(1, 2)) / (zc * zc).sum(axis=(1, 2))
        self.temper = (1 - np.clip(np.nan_to_num(rho), 0.0, 0.95)) / (1 + np.clip(np.nan_to_num(rho), 0.0, 0.95))
        self.densities = KernelDensities(z.reshape(len(z), -1))

    def _log(self, x):
        return np.log(np.maximum(x, 0) + self.delta)

    def subtraction(self, day, measured):
        """c -> [members]: log evidence that each member's ``day`` [members, 24] missed c in every hour it counted.

        Its true use would then have been its reading plus c in those hours: how plausible that
        day is under the member's habits, against the day as read, on every hour its meter
        measured, whether or not the group's balance could be judged in that hour (a day judged
        on few hours, other members' lost hours, still shows the member's own shape).
        """
        hours = np.arange(HOURS)
        counting = measured & (day > PULSE)
        as_read = self.logpdf(day, hours, counting)
        return lambda c: self.logpdf(day + c[:, None] * counting, hours, counting) - as_read

    def logpdf(self, x, hours, mask):
        """Log density of each member's use ``x`` [members, len(hours)] in the hours of the day ``hours``, where ``mask``."""
        dev = self._log(x) - self.mu[:, hours]
        level = np.nan_to_num(masked_median(dev, mask))
        z = (dev - level[:, None]) / self.spread[:, None]
        dens = self.densities.logpdf(z)
        # the density of x, not of log x: d(log(x + δ))/dx, and the spread's scale
        hourly = np.where(mask, dens - np.log(np.maximum(x, 0) + self.delta) - np.log(self.spread)[:, None], 0.0)
        z_level = (level - self.level) / self.level_spread
        return self.temper * hourly.sum(axis=1) + _cauchy_logpdf(z_level) - np.log(self.level_spread)


def mechanism_evidence(r, reported, noise, empty, use=None, counted=None, raw=False, peak=None):
    """Per member, log evidence that the group's hourly rise ``r`` is what its meter failed to register.

    The ways a meter is made to under-register are functions of the true load x: a
    shunt, a bypassed phase or a changed constant register a share (reported = α·x, so
    r = β·reported); a magnet saturates the meter (reported = min(x, cap): r is 0 in
    every hour below the cap); a bypassed fixed load subtracts a constant (reported =
    max(x − c, 0): r = c in every hour the meter counts). Each constrains the hours it
    predicts, each within the group's hourly ``noise``, against the alternative that
    the missing energy of an hour is any amount up to a member's use (uniform on [0,
    typical + r], typical the group's median member that hour): the evidence of an hour
    is log((typical + r)/√(2π·noise²)) − z²/2, z the misfit in noise units, so it is
    positive only when the rise follows the member's own hour-to-hour pattern to within
    about two noise deviations. A subtraction also makes the meter read nothing whenever
    the load is below the constant: ``empty`` [members] (``empty_hours_evidence``: the
    hours its meter read nothing that day against its own rate of them) adds to it. And in the hours
    it counted, its true use would have been reported + c: ``use(c)`` [members] (the log
    density of a member's day of use with c added in every hour it counted, against the day
    as read: ``UseModel.subtraction``) weighs that (every member fits a flat rise alike; only
    the one whose readings fell below its own habits by c makes its true use more plausible).
    The constant is the mean rise of the hours the meter counted, or at least the largest
    rise of the hours it read nothing, when that fits better (a day judged only on hours in
    which the thief's meter read nothing has no counting hour to tell it); not for a meter
    that counted in no hour of its day (``counted`` [members], by default all did): that is a
    stopped meter, which has its own alert, and an older one would be named first in every
    rise of its group after. The best
    mechanism counts, less the evidence of a rise flat in every hour (a constant no member
    needs to explain: every member who counts each hour fits it alike as a subtraction, and
    one judged hour alike as a share of its reading); ``reported`` is [members, hours];
    returns [members], never below 0 (``raw``: the difference itself, to find the member
    that comes closest when none explains the rise alone).
    """
    if len(r) == 0 or not np.isfinite(noise) or noise <= 0:
        return np.zeros(len(reported))
    span, per_hour, counting, below_cap = _hour_terms(r, reported, noise, peak)

    def evidence(predicted, constrained):
        z2 = (r[None, :] - predicted) ** 2 / noise ** 2
        return np.where(constrained, per_hour - z2 / 2, 0.0).sum(axis=1)

    everywhere = np.ones(reported.shape, dtype=bool)
    beta = np.maximum((reported @ r) / np.maximum((reported * reported).sum(axis=1), PULSE ** 2), 0)
    share = evidence(beta[:, None] * reported, everywhere)
    cap = evidence(np.zeros_like(reported), below_cap)

    def constant(c):
        """[members]: r = c in the hours the meter counted; where it read nothing the load was
        below the constant, so r anywhere in [0, c]"""
        room = np.maximum(c, PULSE)[:, None]
        below = np.log(span[None, :] / room) \
            - np.maximum(r[None, :] - room, 0) ** 2 / (2 * noise ** 2)
        return evidence(np.broadcast_to(c[:, None], reported.shape), counting) \
            + np.where(counting, 0.0, below).sum(axis=1)

    # the constant: the mean rise of the hours it counted, or, if that fits worse, the largest
    # rise of the hours it read nothing (the constant is at least that: a day judged on the
    # thief's empty hours alone has no counting hour to say it)
    c = np.sum(np.where(counting, r[None, :], 0), axis=1) / np.maximum(counting.sum(axis=1), 1)
    at_least = np.maximum(np.where(counting, -np.inf, r[None, :]).max(axis=1), 0)
    counted = np.ones(len(reported), dtype=bool) if counted is None else counted
    c = np.where(counted & ~counting.all(axis=1) & (constant(at_least) > constant(c)), at_least, c)
    subtract = constant(c)
    subtract += empty
    if use is not None:
        subtract += use(c)
    # a rise flat in every hour fits every member who counts each hour alike (a constant
    # through its counting hours, a share of a steady reading): what no member needs to
    # explain is no member's evidence, so each is weighed against it too
    flat = evidence(np.full((1, len(r)), r.mean()), np.ones((1, len(r)), dtype=bool))[0]
    if raw:
        return np.maximum(share, np.maximum(cap, subtract)) - max(flat, 0.0)
    return np.maximum(np.maximum(share, np.maximum(cap, subtract)) - max(flat, 0.0), 0.0)


def _hour_terms(r, reported, noise, peak=None):
    """What every mechanism's evidence is made of, per hour of the rise ``r``: the range of the
    alternative (any amount up to the group's median member's use plus r), the evidence of an
    hour a mechanism predicts exactly, log(range/√(2π·noise²)), and per member [members, hours]
    the hours its meter counted and the hours below its day's highest reading (a capped meter's
    flat reading repeats to a pulse): ``peak`` [members], the highest of every hour its meter
    measured that day, else of the hours of ``reported`` (the highest of a few judged hours is
    no cap: the member whose highest of them came in the hour that rose fitted a cap exactly)."""
    span = np.maximum(np.median(reported, axis=0) + np.maximum(r, 0), PULSE)
    per_hour = np.log(span / (np.sqrt(2 * np.pi) * noise))
    top = reported.max(axis=1) if peak is None else np.maximum(peak, reported.max(axis=1))
    return span, per_hour, reported > PULSE, reported < top[:, None] - 2 * PULSE


def pair_evidence(r, reported, noise, a, empty, use=None, counted=None, peak=None, against_own=False):
    """Per member b, log evidence that the rise ``r`` is what member ``a``'s meter and b's missed together.

    Two faults in one group (an older one still in the rise beside a new one) make a day no
    single mechanism fits. Each mechanism predicts an hour's missing energy linearly in its
    parameter where it constrains the hour (a share: β·reported, every hour; a subtraction:
    c in the hours the meter counted; a cap: 0 below the cap) and leaves the other hours
    free; the pair's mechanisms are fitted together (least squares) on the hours both
    constrain, and scored as ``mechanism_evidence`` scores one, against the best that ``a``
    explains without b (alone, or beside a flat rise no member needs). ``against_own``: and
    against the best b explains without a (alone or beside a flat rise), for a partner that
    explains nothing alone: one whose meter counted a steady amount fits a flat rise, and
    beside it every member fitted "a flat rise and a little of its own" better than the flat
    alone. Returns [members], never below 0, 0 for ``a`` itself.
    """
    n = len(reported)
    if len(r) == 0 or not np.isfinite(noise) or noise <= 0:
        return np.zeros(n)
    _, per_hour, counting, below_cap = _hour_terms(r, reported, noise, peak)
    ones = np.ones(reported.shape, dtype=bool)
    # each mechanism: (the column its parameter multiplies, the hours it constrains) per member
    mechanisms = {"share": (reported, ones), "subtract": (counting.astype(np.float64), counting),
                  "cap": (np.zeros(reported.shape), below_cap)}

    def fit(cols, mask):
        """Least squares of r on ``cols`` [members, k, hours] over ``mask``: (evidence, coefficients)."""
        w = mask.astype(np.float64)
        xtx = np.einsum("mih,mh,mjh->mij", cols, w, cols) + RIDGE * np.eye(cols.shape[1])
        coef = np.linalg.solve(xtx, np.einsum("mih,mh,h->mi", cols, w, r)[..., None])[..., 0]
        z2 = (r[None, :] - np.einsum("mi,mih->mh", coef, cols)) ** 2 / noise ** 2
        ev = np.where(mask, per_hour - z2 / 2, 0.0).sum(axis=1)
        # missing energy is never negative: a fit that needs a negative share or constant is none
        return np.where((coef >= -1e-9).all(axis=1), ev, -np.inf), coef

    flat = np.ones((1, 1, len(r)))
    base = max(0.0, fit(flat, ones[:1])[0][0])
    best = np.full(n, -np.inf)

    def extras(ev, coef, how):
        """A subtraction's evidence also weighs the empty hours and the member's habits; never a stopped meter's."""
        if how != "subtract":
            return ev
        ev = ev + empty + (use(np.maximum(coef, 0)) if use is not None else 0.0)
        return np.where(counted, ev, -np.inf) if counted is not None else ev

    if against_own:
        for how, (col_b, mask_b) in mechanisms.items():
            for cols in (col_b[:, None, :], np.stack((col_b, np.ones(col_b.shape)), axis=1)):
                ev, coef = fit(cols, mask_b)
                best_own = extras(ev, coef[:, 0], how)
                base = np.maximum(base, best_own)
    for col_a, mask_a in mechanisms.values():
        alone = fit(col_a[a][None, None, :], mask_a[a][None, :])[0][0]
        beside_flat = fit(np.stack((col_a[a], flat[0, 0]))[None], mask_a[a][None, :])[0][0]
        base = np.maximum(base, max(alone, beside_flat))
        for how, (col_b, mask_b) in mechanisms.items():
            cols = np.stack((np.broadcast_to(col_a[a], col_b.shape), col_b), axis=1)
            ev, coef = fit(cols, mask_a[a][None, :] & mask_b)
            best = np.maximum(best, extras(ev, coef[:, 1], how))
    gain = np.maximum(best - base, 0.0)
    gain[a] = 0.0
    return gain


def empty_hours_evidence(day, measured, zero_rate):
    """[members]: log evidence that a meter read nothing in more of its measured hours of ``day``
    [members, 24] than its own rate of empty hours ``zero_rate`` says (as a subtracted constant
    makes it whenever the load is below the constant): k such hours of n, the binomial log
    likelihood ratio k·log((k/n)/rate) + (n − k)·log((1 − k/n)/(1 − rate)). On every hour the
    meter measured, as ``UseModel.subtraction`` judges its day: the member's own readings do
    not need the group's other meters."""
    n = measured.sum(axis=1)
    k = (measured & (day <= PULSE)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(k * np.log(k / n / zero_rate)) \
            + np.nan_to_num((n - k) * np.log((1 - k / n) / (1 - zero_rate)))


def rank_members(r, deficit, sigma, picks=SUSPECTS_PER_GROUP, logpdf=None, evidence=None):
    """Order members by how well their deficits explain the group's residual imbalance ``r`` [days].

    A member's evidence on a day is the log-likelihood ratio of "its true use was what it
    reported plus the missing energy" against "what it reported is its own variation":
    log p((deficit − r)/sigma) − log p(deficit/sigma), with p the density of members'
    standardised deficits (``logpdf``; by default a Cauchy), plus any other ``evidence``
    [members, days] in the same units (``mechanism_evidence``). A heavy-tailed p matters: a
    member who used far less than usual for its own reasons (a flat left empty) must not
    outrank the one whose deficit matches the missing energy exactly. Its score sums that
    evidence from its own onset to the last day, the onset being the day of the rise that
    gives the most (CUSUM): a fault that began on top of an older one in the same group is
    not held to the days before it began, and a persistent one gathers evidence day by day.
    Greedy: the best member is taken, its deficit from its onset on (clipped to what is
    left) is removed from ``r``, and the rest are scored again, so two thieves in one group
    both come up. ``deficit`` is [members, days]; returns (order, score at the time each was
    taken); the members after the ``picks`` greedy ones follow by their score against what
    is left, so every score is a finite number (alerts are JSON, which has no infinity).
    """
    logpdf = logpdf or _cauchy_logpdf
    left = np.asarray(r, dtype=np.float64).copy()
    sigma = np.asarray(sigma, dtype=np.float64)
    sigma = sigma[:, None] if sigma.ndim == 1 else sigma
    evidence = np.zeros(deficit.shape) if evidence is None else np.broadcast_to(evidence, deficit.shape)
    score = np.zeros(len(deficit))
    order = []
    remaining = np.ones(len(deficit), dtype=bool)
    base = logpdf(deficit / sigma)

    def llr_now():
        """Each member's best sum of daily evidence from an onset to the last day, and that onset."""
        daily = logpdf((deficit - np.maximum(left, 0)[None, :]) / sigma) - base + evidence
        since = np.cumsum(daily[:, ::-1], axis=1)[:, ::-1]  # since[:, j]: the days from j to the last
        onset = np.argmax(since, axis=1)
        return since[np.arange(len(since)), onset], onset

    for _ in range(min(picks, len(deficit))):
        llr, onset = llr_now()
        llr[~remaining] = -np.inf
        best = int(np.argmax(llr))
        order.append(best)
        score[best] = llr[best]
        remaining[best] = False
        taken = np.clip(deficit[best], 0, np.maximum(left, 0))
        taken[:onset[best]] = 0
        left = left - taken
    rest = np.nonzero(remaining)[0]
    if len(rest):
        score[rest] = llr_now()[0][rest]
        rest = rest[np.argsort(-score[rest], kind="stable")]
    return order + list(rest), score


def _cauchy_logpdf(z):
    return -np.log1p(z * z)


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
        # Without its group's balance a stopped meter looks like a household away: wait for a day
        # the balance can be judged (a data_gap alert names the missing hours meanwhile). Households
        # away read zero on every day of their holiday, so the group must have risen by the rise's
        # own test: 3 deviations here would name one of them by chance on 1.3·10⁻³ of those days.
        if not rise.valid[g, k] or not rise.risen[g, k] or rise.residual[g, k] < STOPPED_RISE_SHARE * stats.forecast[m]:
            continue
        how = "counted nothing" if np.nanmax(flat[m]) == 0 else "repeated %.3f every hour" % np.nanmax(flat[m])
        out.append(_alert("stopped_meter", meter_ids[m], group_of[m], stats.forecast[m] / stats.sigma[m],
                          "%s all day; usually %.3f a day; group imbalance rose by %.3f" % (
                              how, stats.forecast[m], rise.residual[g, k])))
    return out


def _leaks(stats, window, model, meter_ids, group_of):
    """Consumers' water meters only: a leak between an input and its members shows as imbalance."""
    inputs = {m for g in model.groups.values() for m in g.inputs}
    water = np.array([m.resource == "water" and m.id not in inputs for m in model.meters.values()], dtype=bool)
    measured = stats.raw_quality[:, -1, :] == MEASURED
    flowing = np.where(measured, stats.today, np.inf).min(axis=1)
    candidates = np.nonzero(water & (stats.measured_today >= STOPPED_MIN_HOURS) & (flowing >= LEAK_MIN_FLOW))[0]
    with _quiet():
        usual_min = np.nan_to_num(np.nanpercentile(stats.min_flow(candidates, window), 90, axis=1))
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
