"""Consumption that drives each meter's pulses: daily and weekly profiles.

Every module has an electricity meter (1000 imp/kWh), a cold-water and a
hot-water meter (10 L per pulse). Each meter has its own scale (log-normal,
households differ by a factor of about two either way) and its hourly shape:
night trough, morning and evening peaks, a later and flatter weekend. Pulses
are a Poisson process at the hour's rate, generated lazily up to the moment a
module wakes, so idle time costs nothing.
"""

import math

# Share of a day's consumption in each hour (weekday, weekend), from typical household load curves.
_WEEKDAY = (1.6, 1.3, 1.2, 1.2, 1.3, 2.2, 4.6, 6.4, 5.6, 3.9, 3.4, 3.5,
            3.8, 3.6, 3.4, 3.6, 4.4, 6.0, 7.6, 8.2, 7.8, 6.6, 4.6, 2.6)
_WEEKEND = (2.0, 1.6, 1.3, 1.2, 1.2, 1.4, 2.0, 3.2, 4.8, 5.8, 5.6, 5.4,
            5.6, 5.0, 4.4, 4.2, 4.6, 5.6, 6.8, 7.2, 6.8, 5.8, 4.4, 3.0)
# Mean pulses a day per meter kind: 8 kWh at 1000 imp/kWh; 300 L and 120 L at 10 L/pulse.
KINDS = (("electricity", 8000.0), ("cold water", 30.0), ("hot water", 12.0))


def hourly_share(unix_hour):
    """Share of the day's total that falls in this hour (UTC hours since 1970)."""
    day = (unix_hour // 24 + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    shape = _WEEKEND if day >= 5 else _WEEKDAY
    return shape[unix_hour % 24] / sum(shape)


class MeterSource:
    """The pulses of one meter: a Poisson process following the profile."""

    def __init__(self, kind, rng):
        name, per_day = KINDS[kind]
        self.kind = kind
        self.per_day = per_day * math.exp(rng.normal(0.0, 0.5))
        self.until = 0.0  # unix seconds up to which pulses were generated

    def pulses(self, start, end, rng):
        """Sorted unix times of the pulses in [start, end)."""
        times = []
        t = start
        while t < end:
            hour = int(t // 3600)
            seg_end = min(end, (hour + 1) * 3600.0)
            lam = self.per_day * hourly_share(hour) * (seg_end - t) / 3600.0
            n = int(rng.poisson(lam))
            if n:
                times.extend(sorted(rng.uniform(t, seg_end, n).tolist()))
            t = seg_end
        return times
