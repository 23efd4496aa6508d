"""Trickle timer (RFC 6206) for beacons: fast after a change, a few an hour when calm."""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_add, ticks_diff

IMIN_MS = const(2000)  # a cold network learns routes one hop per ~1.5 s
DOUBLINGS = const(11)  # Imax = 2 s * 2048 = 68 min: <= 21 beacons a day when nothing changes
REDUNDANCY = const(0)  # k = 0: never suppressed (as Contiki-NG): routers hear only the level above, not their peers


class Trickle:
    def __init__(self, rand, imin_ms=IMIN_MS, doublings=DOUBLINGS, k=REDUNDANCY):
        self._rand = rand
        self.imin = imin_ms
        self.imax = imin_ms << doublings
        self.k = k
        self.interval = 0  # 0: stopped
        self._cap = self.imax  # the longest interval until the next reset (reset's imax_ms)
        self._start = 0
        self._fire = 0
        self._fired = False
        self.heard = 0

    def running(self):
        return self.interval > 0

    def reset(self, now, imax_ms=0):
        """Something changed: advertise soon (RFC 6206 section 4.2 rule 6).

        ``imax_ms`` caps the intervals until the next reset (0: Imax).
        """
        self._cap = imax_ms or self.imax
        if self.interval != self.imin or not self.running():
            self._begin(now, self.imin)

    def stop(self):
        self.interval = 0

    def consistent(self):
        self.heard += 1

    def _begin(self, now, interval):
        self.interval = interval
        self._start = now
        half = interval // 2
        self._fire = ticks_add(now, half + self._rand.below(half))
        self._fired = False
        self.heard = 0

    def due_in(self, now):
        """ms until the timer next needs attention, or None when stopped."""
        if not self.running():
            return None
        until = self._fire if not self._fired else ticks_add(self._start, self.interval)
        return max(0, ticks_diff(until, now))

    def poll(self, now):
        """Advance the timer; True when the caller should send its beacon now."""
        if not self.running():
            return False
        send = False
        if not self._fired and ticks_diff(now, self._fire) >= 0:
            self._fired = True
            send = self.k == 0 or self.heard < self.k
        if ticks_diff(now, ticks_add(self._start, self.interval)) >= 0:
            self._begin(now, min(self.interval * 2, self._cap))
        return send
