"""Meters whose pulses are the sum of other meters': the input meter of a balance group.

A house's main meter sees every pulse its apartments' meters see. ``SumSource``
stands where a MeterSource stands (``World.feed_pulses`` asks it for the pulses of a
time span) and answers with the union of its members' pulses in that span. Each
member is fed lazily, when its own node wakes, so a ``Tee`` in front of it draws
its pulses ahead and keeps them until both readers (the member meter and the sum)
have passed them.

Two faults a balance must reveal sit on either side of a ``Tee``: a ``Leak`` below
it (water really flows, so the member meter and the input both count it) and a
``Bypass`` above it (energy flows past the member meter: the input counts it, the
member does not).
"""

from bisect import bisect_left

from simulator.profiles import PulseOutput


class Tee:
    """One meter's pulses, read by the meter itself and by the input meter above it."""

    def __init__(self, source):
        self.source = source
        self.kind = source.kind
        self.until = source.until  # the meter's own read position; World.feed_pulses moves it
        self._sum_until = source.until  # the input meter's read position
        self._drawn = None  # how far pulses were drawn from the source
        self._times = []  # drawn pulses that a reader has still to pass, sorted

    def _between(self, start, end, rng):
        if self._drawn is None:
            self._drawn = start
        if end > self._drawn:
            self._times.extend(self.source.pulses(self._drawn, end, rng))
            self._drawn = end
        return self._times[bisect_left(self._times, start):bisect_left(self._times, end)]

    def _trim(self):
        del self._times[:bisect_left(self._times, min(self.until, self._sum_until))]

    def pulses(self, start, end, rng):
        """The meter's own pulses in [start, end)."""
        times = self._between(start, end, rng)
        self.until = end
        self._trim()
        return times

    def pulses_for_sum(self, start, end, rng):
        times = self._between(start, end, rng)
        self._sum_until = end
        self._trim()
        return times


class SumSource:
    """The pulses of several meters together: ``members`` are (node, channel) pairs.

    Each member pulse is one unit of energy or water through the input meter, which
    pulses it out through its own PulseOutput.
    """

    def __init__(self, members):
        self.kind = None
        self.until = 0.0
        self.tees = []
        self.output = PulseOutput()
        for node, channel in members:
            tee = node.sources[channel]
            if not isinstance(tee, Tee):
                tee = node.sources[channel] = Tee(tee)
            self.tees.append(tee)

    def pulses(self, start, end, rng):
        due = []
        for tee in self.tees:
            due.extend(tee.pulses_for_sum(start, end, rng))
        due.sort()
        return self.output.emit(due, end)


class Leak:
    """A meter's pulses plus a steady leak (a running cistern) from unix time ``start`` on.

    The leak flows at ``pulses_per_hour`` evenly spaced pulses, so it shows in every
    hour, as a real one does on a pulse meter with a fine enough pulse constant.
    """

    def __init__(self, source, start, pulses_per_hour):
        self.source = source
        self.kind = source.kind
        self.until = source.until
        self.start = start
        self.period = 3600.0 / pulses_per_hour
        self.output = PulseOutput()

    def pulses(self, start, end, rng):
        due = self.source.pulses(start, end, rng)
        self.source.until = end
        first = max(0, -int((self.start - start) // self.period))  # the first leak pulse at or after start
        t = self.start + first * self.period
        while t < end:
            due.append(t)
            t += self.period
        due.sort()
        return self.output.emit(due, end)


class Bypass:
    """A member meter that misses ``share`` of its pulses from unix time ``start`` on.

    It stands above the member's ``Tee``, so the input meter still counts every
    pulse: the missed ones are the group's imbalance. Which pulses are missed is
    fixed (an even spread), so ``stolen`` is exact.
    """

    def __init__(self, tee, start, share):
        self.tee = tee
        self.kind = tee.kind
        self.until = tee.until
        self.start = start
        self.share = share
        self.stolen = {}  # unix hour -> pulses the meter missed
        self._debt = 0.0

    def pulses(self, start, end, rng):
        counted = []
        for t in self.tee.pulses(start, end, rng):
            if t >= self.start:
                self._debt += self.share
                if self._debt >= 1.0:
                    self._debt -= 1.0
                    hour = int(t // 3600)
                    self.stolen[hour] = self.stolen.get(hour, 0) + 1
                    continue
            counted.append(t)
        return counted
