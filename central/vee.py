"""Validation and estimation of hourly values, applied when a window of days is read.

Gaps stay flagged: a single missing hour between two known ones is interpolated
(``INTERPOLATED``), a longer gap is estimated from like days (``ESTIMATED``): the
mean of the same hour on the same weekday in the window, else on any day of it.
Estimates live only in the returned copy, never in the store, and carry their
quality, so no caller can mistake one for a measurement.
"""

import numpy as np

from central.store import ESTIMATED, HOURS, INTERPOLATED, MISSING

WEEK = 7


def fill(values, quality, day0):
    """Return (values, quality) copies of a [meters, days*24] window with gaps estimated where possible.

    ``day0`` is the first day's number (days since 1970-01-01), for weekdays.
    Hours nothing can estimate stay NaN and ``MISSING``.
    """
    values = values.copy()
    quality = quality.copy()
    missing = np.isnan(values)
    if not missing.any():
        return values, quality
    # One missing hour with known neighbours: the mean of the two.
    single = np.zeros_like(missing)
    single[:, 1:-1] = missing[:, 1:-1] & ~missing[:, :-2] & ~missing[:, 2:]
    rows, cols = np.nonzero(single)
    values[rows, cols] = (values[rows, cols - 1] + values[rows, cols + 1]) / 2
    quality[rows, cols] = INTERPOLATED
    missing[rows, cols] = False
    if not missing.any():
        return values, quality
    # Longer gaps: like days. Only meters with a gap take part, to keep big windows cheap.
    gappy = np.nonzero(missing.any(axis=1))[0]
    ndays = values.shape[1] // HOURS
    v = values[gappy].reshape(len(gappy), ndays, HOURS)
    known = ~np.isnan(v) & (quality[gappy].reshape(v.shape) != MISSING)
    known &= quality[gappy].reshape(v.shape) != ESTIMATED
    filled = np.where(known, v, 0.0)
    any_sum, any_n = filled.sum(axis=1), known.sum(axis=1)  # [meters, 24]
    weekday = (day0 + np.arange(ndays)) % WEEK
    estimate = np.full(v.shape, np.nan)
    for wd in range(WEEK):
        days = weekday == wd
        if not days.any():
            continue
        wd_sum, wd_n = filled[:, days].sum(axis=1), known[:, days].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            like = np.where(wd_n > 0, wd_sum / np.maximum(wd_n, 1), any_sum / np.maximum(any_n, 1))
            like[(wd_n == 0) & (any_n == 0)] = np.nan
        estimate[:, days] = like[:, None, :]
    estimate = estimate.reshape(len(gappy), ndays * HOURS)
    gap = missing[gappy] & ~np.isnan(estimate)
    sub_v, sub_q = values[gappy], quality[gappy]
    sub_v[gap] = estimate[gap]
    sub_q[gap] = ESTIMATED
    values[gappy], quality[gappy] = sub_v, sub_q
    return values, quality
