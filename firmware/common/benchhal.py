"""A HAL for tests and benchmarks: a scripted clock, injected pulses, recorded relay and flash in a directory.

Runs on CPython and MicroPython. It implements every method of firmware/common/hal.py
that a module uses, without inheriting the abstract class: on a 64 KB heap the base
class's bytecode is RAM the module needs (tests/test_d100fc_benchhal.py checks the
methods match the contract). Time only moves when the test calls
``advance``; ``pulse`` calls the attached interrupt handler as a board's edge
interrupt would. On MicroPython the flash directory may be a VfsLfs2 mount of
a RamFlash (firmware/common/ramflash.py); on CPython any directory.
"""

from protocol.compat import const

TICKS_MASK = const(0x3FFFFFFF)  # ticks_ms wraps at 2**30 like time.ticks_ms on boards
START = const(1780000000)  # 2026-05-28, any set clock will do


class BenchHAL:
    def __init__(self, flash_dir, unix=START, ticks=0):
        self.dir = flash_dir
        self.ms = ticks  # milliseconds since this HAL's boot (the ticks source)
        self.clock_base = unix * 1000 - ticks  # unix milliseconds = clock_base + ms
        self.handlers = [None, None, None]
        self.relay_closed = None
        self.relay_switches = 0
        self.battery = 3600
        self.magnet = False
        self.cover = False
        self.power = True
        self.fed = 0

    # test controls
    def advance(self, seconds=0, ms=0):
        self.ms += seconds * 1000 + ms

    def pulse(self, channel):
        self.handlers[channel](channel, self.ms & TICKS_MASK)

    # the HAL
    def ticks_ms(self):
        return self.ms & TICKS_MASK

    def unix_time(self):
        return (self.clock_base + self.ms) // 1000

    def set_unix_time(self, seconds):
        self.clock_base = seconds * 1000 - self.ms

    def pulse_attach(self, channel, handler):
        self.handlers[channel] = handler

    def relay_set(self, closed):
        if closed != self.relay_closed:
            self.relay_switches += 1
        self.relay_closed = closed

    def battery_mv(self):
        return self.battery

    def magnet_present(self):
        return self.magnet

    def cover_open(self):
        return self.cover

    def power_ok(self):
        return self.power

    def flash_path(self):
        return self.dir

    def watchdog_feed(self):
        self.fed += 1


class RecordingUplink:
    """An uplink that keeps what the module sends: (payload, urgent, backfill) triples."""

    def __init__(self):
        self.sent = []
        self.accept = True

    def send(self, payload, urgent=False, backfill=False):
        if self.accept:
            self.sent.append((payload, urgent, backfill))
        return self.accept
