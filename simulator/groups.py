"""Meters whose pulses are the sum of other meters': the input meter of a balance group.

A house's main meter sees every pulse its apartments' meters see. ``SumSource``
stands where a MeterSource stands (``World.feed_pulses`` asks it for the pulses of a
time span) and answers with the union of its members' pulses in that span. Each
member is fed lazily, when its own node wakes, so a ``Tee`` in front of it draws
its pulses ahead and keeps them until both readers (the member meter and the sum)
have passed them.
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
