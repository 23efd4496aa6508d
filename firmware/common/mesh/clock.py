"""Millisecond tick arithmetic that survives the wrap of a board's tick counter."""

from protocol.compat import const

TICKS_PERIOD = const(1 << 30)  # MicroPython's time.ticks_ms() wraps here
_TICKS_MASK = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


def ticks_diff(a, b):
    """a - b in milliseconds, correct across one wrap (|a - b| < 2**29 ms, 6 days)."""
    return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF


def ticks_add(a, delta):
    return (a + delta) & _TICKS_MASK


class Rand:
    """xorshift32: cheap, allocation-light jitter; seeded per node so a simulation replays exactly."""

    def __init__(self, seed):
        self._s = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def below(self, n):
        """A pseudo-random integer in 0..n-1 (n >= 1)."""
        s = self._s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self._s = s
        return s % n
