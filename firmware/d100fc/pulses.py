"""Pulse inputs: the interrupt handler and the drain that hands its counts to the registers.

The handler runs in interrupt context with the heap locked, so it only does
small-int arithmetic and stores into preallocated arrays. Its counters wrap at
2**30 (the small-int limit of a 32-bit MCU, where bigger ints would allocate);
the main loop drains them often enough that the wrap is never ambiguous.
Only the handler writes a counter and only the drain reads it, and a word read
is atomic, so no interrupt needs disabling.
"""

from array import array

from protocol.compat import const

WRAP = const(0x3FFFFFFF)  # 2**30 - 1: counters and tick differences stay small ints
CHANNELS = const(3)


class PulseInputs:
    def __init__(self, debounce_ms):
        self._count = array("I", [0] * CHANNELS)  # accepted edges, modulo 2**30 (handler only)
        self._last = array("I", [0] * CHANNELS)  # ticks of the last accepted edge
        self._debounce = array("I", [0] * CHANNELS)
        self._drained = array("I", [0] * CHANNELS)  # _count at the previous drain
        for ch in range(len(debounce_ms)):
            self.set_debounce(ch, debounce_ms[ch])

    def set_debounce(self, channel, ms):
        self._debounce[channel] = ms

    def arm(self, ticks_now):
        """Forget edge history so the first real edge after boot is accepted."""
        for ch in range(CHANNELS):
            self._last[ch] = (ticks_now - self._debounce[ch] - 1) & WRAP

    def on_edge(self, channel, ticks):
        """Interrupt handler: count a falling edge unless it is contact bounce.

        An edge closer than the debounce time to the last accepted edge is bounce.
        """
        if ((ticks - self._last[channel]) & WRAP) <= self._debounce[channel]:
            return
        self._last[channel] = ticks & WRAP
        self._count[channel] = (self._count[channel] + 1) & WRAP

    def drain(self, channel):
        """Edges accepted since the previous drain of ``channel``."""
        now = self._count[channel]
        n = (now - self._drained[channel]) & WRAP
        self._drained[channel] = now
        return n
