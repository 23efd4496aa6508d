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


# A meter's pulse output cannot pulse faster than this: an S0 output (IEC 62053-31) holds
# each pulse >= 30 ms and then rests; a meter buffers energy that arrives faster and
# pulses it out as soon as the output is free, so none is lost. 100 ms keeps every
# pulse clear of the module's 20 ms debounce window.
MIN_PULSE_PERIOD_S = 0.1


class PulseOutput:
    """A meter's pulse output: passes on the pulses owed, no two closer than MIN_PULSE_PERIOD_S."""

    def __init__(self):
        self._owed = []  # pulses due but not yet out, sorted
        self._last = float("-inf")  # time of the last pulse out

    def emit(self, due, end):
        """Pulses out before ``end``, given the newly ``due`` ones (sorted); the rest wait."""
        self._owed.extend(due)
        self._owed.sort()
        out = []
        last = self._last
        for t in self._owed:  # two million pulses a simulated day at 240 modules: kept lean
            earliest = last + MIN_PULSE_PERIOD_S
            if t < earliest:
                t = earliest
            if t >= end:
                break
            out.append(t)
            last = t
        self._last = last
        del self._owed[:len(out)]
        return out


class MeterSource:
    """The pulses of one meter: a Poisson process following the profile."""

    def __init__(self, kind, rng):
        name, per_day = KINDS[kind]
        self.kind = kind
        self.per_day = per_day * math.exp(rng.normal(0.0, 0.5))
        self.until = 0.0  # unix seconds up to which pulses were generated
        self.output = PulseOutput()

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
        return self.output.emit(times, end)
