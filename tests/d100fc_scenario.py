"""Shared scenario helpers for the D100FC tests (CPython and, via tests/mpy, MicroPython)."""

from firmware.common.benchhal import BenchHAL, RecordingUplink
from firmware.d100fc import calendar_blob
from firmware.d100fc.module import Module
from protocol import messages
from protocol import tesla

# Day tariff 1 from 07:00 to 23:00 local, night tariff 2 otherwise; Sundays all night; UTC+1 with EU DST
WEEKDAY = [(0, 2), (7 * 60, 1), (23 * 60, 2)]
SUNDAY = [(0, 2)]


def two_tariff_calendar(activation=0, offset=60, shift=60):
    return calendar_blob.encode(
        seasons=[(1, 1, 1)], weeks={1: bytes([1, 1, 1, 1, 1, 1, 2])}, days={1: WEEKDAY, 2: SUNDAY},
        specials=[(0, 1, 1, 2)], activation=activation, offset=offset, shift=shift,
        dst_start=(3, 5, 6, 120), dst_end=(10, 5, 6, 120))


def config(**extra):
    cfg = {"addr": 7, "channels": [
        {"resource": "electricity", "pulse_const": 3200, "debounce_ms": 5, "initial": 1000},
        {"resource": "water", "pulse_const": 100, "debounce_ms": 5, "initial": 0},
        {"resource": "gas", "pulse_const": 100, "debounce_ms": 5, "initial": 50}]}
    cfg.update(extra)
    return cfg


def make(flash_dir, unix=None, **extra):
    hal = BenchHAL(flash_dir) if unix is None else BenchHAL(flash_dir, unix)
    up = RecordingUplink()
    mod = Module(hal, config(**extra), up)
    mod.boot()
    return hal, up, mod


def run(hal, mod, seconds, rates=(0, 0, 0), step_ms=100):
    """Advance ``seconds``, pulsing channel c every rates[c] ms (0: never), ticking on next_wakeup.

    Returns the pulses injected per channel.
    """
    sent = [0, 0, 0]
    wake = mod.next_wakeup()
    end = hal.ms + seconds * 1000
    while hal.ms < end:
        hal.advance(ms=step_ms)
        for ch in range(3):
            if rates[ch] and hal.ms % rates[ch] < step_ms:
                hal.pulse(ch)
                sent[ch] += 1
        if hal.unix_time() >= wake:
            mod.tick()
            wake = mod.next_wakeup()
    return sent


def decoded(up, kind):
    return [messages.decode(p) for p, _, _ in up.sent if p[0] == kind.TYPE]


class ChainKeeper:
    """The agent's end of the chain, as edge_agent keeps it: tags broadcasts, discloses keys."""

    def __init__(self, hal, start, length=50000):
        self.hal = hal
        self.start = start
        self.keys = [bytes(range(16))]  # K_length first; reversed below so that keys[i] is K_i
        for _ in range(length):
            self.keys.append(tesla.previous(self.keys[-1]))
        self.keys.reverse()

    def now_interval(self):
        return (self.hal.unix_time() - self.start) // tesla.INTERVAL_S

    def anchor(self, seq=1):
        i = self.now_interval() - tesla.DISCLOSE_AFTER - 1  # already disclosed: safe to hold
        return messages.SetAnchor(seq, self.start, i, self.keys[i]).encode()

    def tagged(self, msg, interval=None, key=None):
        i = self.now_interval() if interval is None else interval
        payload = msg.encode()
        return messages.Tagged(i, tesla.tag(key or self.keys[i], i, payload), payload).encode()

    def disclose(self, interval):
        return messages.Disclose(interval, self.keys[interval]).encode()
