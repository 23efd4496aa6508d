"""Hourly consumption from exact register readings (pulses), as ingest stores it.

Between two readings whole hours apart the consumption is exact: the register
difference divided by the pulse constant. One hour apart gives a ``MEASURED`` hour;
two apart (one reading lost) spreads it evenly as ``INTERPOLATED``; more as
``ESTIMATED`` (the total is still exact, the split is not). The register may roll
over at the meter's modulus, and restarts when the meter is replaced.
"""

from central.store import ESTIMATED, INTERPOLATED, MEASURED

HOUR_S = 3600


def register_delta(t0, v0, t1, v1, rollover=None, replacements=()):
    """Pulses counted between two readings, or None when the register went back unexplained.

    ``replacements``: [(ts, final_old, start_new)] of the meter, in time order.
    """
    pulses = 0
    for ts, final_old, start_new in replacements:
        if t0 < ts <= t1:
            if final_old < v0:
                return None
            pulses += final_old - v0
            v0 = start_new
    if v1 >= v0:
        return pulses + v1 - v0
    if rollover:
        return pulses + v1 + rollover - v0
    return None


def hourly(readings, pulse_constant, rollover=None, replacements=()):
    """[(unix hour, value, quality)] from [(ts, pulses)] readings sorted by ts.

    A reading's time is rounded to the nearest hour: modules report at hour starts,
    and a clock a few minutes off should not shift a whole hour's consumption.
    """
    by_hour = {}
    for ts, value in readings:
        by_hour[(ts + HOUR_S // 2) // HOUR_S] = (ts, value)
    hours = sorted(by_hour)
    out = []
    for h0, h1 in zip(hours, hours[1:]):
        (t0, v0), (t1, v1) = by_hour[h0], by_hour[h1]
        pulses = register_delta(t0, v0, t1, v1, rollover, replacements)
        if pulses is None:
            continue
        span = h1 - h0
        quality = MEASURED if span == 1 else INTERPOLATED if span == 2 else ESTIMATED
        per_hour = pulses / pulse_constant / span
        out.extend((h, per_hour, quality) for h in range(h0, h1))
    return out

