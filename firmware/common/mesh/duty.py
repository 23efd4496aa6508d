"""The band's duty-cycle limit, enforced by the sender itself.

ERC/REC 70-03 allows 10 % transmit time in any hour in 433.05-434.79 MHz and
wants it "guaranteed by appropriate technical means". Transmit time is summed
in BUCKETS slots of BUCKET_MS; any one-hour window overlaps at most BUCKETS of
them, so refusing a frame whenever their sum plus the frame would pass the
limit keeps every sliding hour at or below 10 %, never above.
"""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_add, ticks_diff

HOUR_MS = const(3600000)
LIMIT_MS = const(360000)  # 10 % of an hour
BUCKET_MS = const(360000)  # 6 minutes: 11 buckets cover any hour with margin of one bucket
BUCKETS = const(11)


class DutyCycle:
    def __init__(self, now_ms, limit_ms=LIMIT_MS):
        self.limit_ms = limit_ms
        self._used = [0] * BUCKETS  # transmit ms per bucket, ring
        self._head = 0  # index of the current bucket
        self._start = now_ms  # tick at which the current bucket began

    def _advance(self, now_ms):
        steps = ticks_diff(now_ms, self._start) // BUCKET_MS
        if steps <= 0:
            return
        for _ in range(min(steps, BUCKETS)):
            self._head = (self._head + 1) % BUCKETS
            self._used[self._head] = 0
        self._start = ticks_add(self._start, steps * BUCKET_MS)

    def used_ms(self, now_ms):
        """Transmit time in the window that covers the last hour (an upper bound)."""
        self._advance(now_ms)
        return sum(self._used)

    def fits(self, now_ms, airtime_ms):
        """True if sending ``airtime_ms`` now keeps every hour within the limit."""
        return self.used_ms(now_ms) + airtime_ms <= self.limit_ms

    def book(self, now_ms, airtime_ms):
        """Count a frame that went on air."""
        self._advance(now_ms)
        self._used[self._head] += airtime_ms
