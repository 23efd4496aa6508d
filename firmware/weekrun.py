# A simulated week of one module, for the 64 KB-heap test and `balans bench firmware`.
# Run under MicroPython:  micropython -X heapsize=64k firmware/weekrun.py DAYS DIR [ram] [scale] [checkpoint_s]
# DIR: a host directory for the flash, or with "ram" a RamFlash mounted as VfsLfs2 (counts erases).
# scale stretches the pulse periods; checkpoint_s overrides the checkpoint interval (for baselines).
# Three meters pulse all week (electricity at 3 kW, water and gas trickling), and every kind of
# event happens once: magnet, cover, clock set, load limit with relay cycling, ripple group shed,
# backfill, a refused calendar, a power failure with reboot, a water leak. Prints one JSON line.
import gc
import json
import sys
import time
from array import array

from firmware.common.benchhal import BenchHAL
from firmware.d100fc.module import Module
from protocol import messages as m

START = 1780272000  # 2026-06-01 00:00 UTC, a Monday
GC_THRESHOLD = 2048  # collect after this many bytes allocated, as a board's main loop would: less fragmentation
DAY = 86400


class CountingUplink:
    """Counts what the module sends, per message type, in one array allocated up front: a board
    keeps nothing of what it sent, so the bench must not pin objects across the heap either."""

    def __init__(self):
        self.by_type = array("I", bytes(4 * 32))  # message types are below 0x20

    def send(self, payload, urgent=False, backfill=False):
        self.by_type[payload[0]] += 1
        return True


# Calendars as the head end sends them, built once with firmware/d100fc/calendar_blob.py (which a
# module does not carry, so the week does not import it either):
# two tariffs, a winter and a summer week, two holidays, UTC+3:
#   encode([(1, 1, 1), (10, 1, 2)], {1: bytes([1, 1, 1, 1, 1, 2, 2]), 2: bytes([3, 3, 3, 3, 3, 2, 2])},
#          {1: [(0, 2), (420, 1), (1380, 2)], 2: [(0, 2)], 3: [(0, 2), (420, 3), (1260, 1), (1380, 2)]},
#          [(0, 1, 1, 2), (0, 5, 9, 2)], 0, 180, 0)
TWO_TARIFF = bytes.fromhex("544301020203020000000000b4000000000000000000000000000101010a0102010101010101020202030303030302"
                           "020103000002a4010164050202010000020304000002a40103ec040164050200000101020000050902")
# refused: tariff 7 does not exist   encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 7)]})
BAD_CALENDAR = bytes.fromhex("544301010101000000000000000000000000000000000000000001010101010101010101010101000007")


CONFIG = {"addr": 42, "groups": [5], "channels": [
    {"resource": "electricity", "pulse_const": 3200, "debounce_ms": 30, "initial": 123456, "contract": 12000},
    {"resource": "water", "pulse_const": 100, "debounce_ms": 50},
    {"resource": "gas", "pulse_const": 100, "debounce_ms": 50}]}


def main(days, where, ram, scale, checkpoint_s):
    if not ram:  # with a RamFlash in the heap every collection scans it: the CPU figures would be the GC's
        gc.threshold(GC_THRESHOLD)
    dev = None
    if ram:
        import vfs
        from firmware.common.ramflash import RamFlash
        dev = RamFlash(4096, 64)
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(vfs.VfsLfs2(dev), where)
        dev.ops = dev.erases = 0
        for b in range(dev.block_count):
            dev.wear[b] = 0
    hal = BenchHAL(where, START)
    up = CountingUplink()
    cfg = dict(CONFIG)
    cfg["calendar"] = TWO_TARIFF
    if checkpoint_s:
        cfg["checkpoint_s"] = checkpoint_s
    mod = Module(hal, cfg, up)
    mod.boot()
    # pulse periods in ms: 3 kW at 3200 imp/kWh; a trickle of water; some gas
    period = [375 * scale, 60000 * scale, 90000 * scale]
    due = [period[0], period[1], period[2]]
    truth = [123456, 0, 0]
    end_ms = days * DAY * 1000
    script = [(DAY + 12 * 3600, "magnet on"), (DAY + 12 * 3600 + 1800, "magnet off"),
              (2 * DAY + 3600, "cover"), (2 * DAY + 3700, "cover"), (2 * DAY + 7200, "clock"),
              (3 * DAY + 8 * 3600, "limit"), (3 * DAY + 12 * 3600, "unlimit"), (4 * DAY + 10 * 3600, "shed"),
              (5 * DAY, "backfill"), (5 * DAY + 60, "bad calendar"), (6 * DAY + 5 * 3600, "power cut")]
    hour_us = array("I", bytes(4 * (days * 24 + 1)))  # tick time per simulated hour
    ticks = 0
    live_peak = 0
    wake_ms = wake(mod, hal)
    while hal.ms < end_ms:
        nxt = min(due[0], due[1], due[2], wake_ms)
        if script and script[0][0] * 1000 < nxt:
            nxt = script[0][0] * 1000
        hal.ms = nxt
        for ch in range(3):
            if due[ch] == nxt:
                hal.pulse(ch)
                truth[ch] += 1
                # the relay sheds secondary load: half the electricity while it is open
                due[ch] += period[ch] * (2 if ch == 0 and not hal.relay_closed else 1)
        if script and script[0][0] * 1000 == nxt:
            what = script.pop(0)[1]
            if what == "power cut":  # the old module's RAM is gone before the new one boots
                mod.power_fail()
                config = mod.config
                mod = None
                hal.handlers[0] = hal.handlers[1] = hal.handlers[2] = None  # a reset detaches the interrupts
                gc.collect()
                mod = Module(hal, config, up)
                mod.boot()
            else:
                act(what, mod, hal)
        if nxt >= wake_ms:
            t0 = time.ticks_us()
            mod.tick()
            hour_us[hal.ms // 3600000] += time.ticks_diff(time.ticks_us(), t0)
            ticks += 1
            wake_ms = wake(mod, hal)
            if hal.ms % 3600000 == 0:
                gc.collect()
                live_peak = max(live_peak, gc.mem_alloc())
    mod.power_fail()
    hours = days * 24
    out = {"days": days, "pulses": sum(truth) - 123456, "exact": [mod.registers.total(ch) for ch in range(3)] == truth,
           "hourly": up.by_type[m.Hourly.TYPE], "events": mod.events.seq, "checkpoints": mod.checkpoints,
           "ticks_per_hour": ticks / hours, "live_heap_peak": live_peak,
           "heap_total": gc.mem_alloc() + gc.mem_free(), "relay_switches": hal.relay_switches}
    out["hour_cpu_ms"] = median(hour_us, hours) / 1000  # the median hour: robust to a busy host
    if dev is not None:
        out["erases"] = dev.erases
        out["max_block_erases"] = max(dev.wear)
        out["programs"] = dev.ops - dev.erases
        out["block_count"] = dev.block_count
        out["block_size"] = dev.block_size
    print(json.dumps(out))


def wake(mod, hal):
    """The HAL millisecond at which the module wants its next tick (the clock may have been set)."""
    return hal.ms + (mod.next_wakeup() - hal.unix_time()) * 1000


def median(values, n):
    """The median of values[:n], sorted in place: a sorted copy of the week would outgrow the module's heap."""
    for i in range(1, n):
        v = values[i]
        j = i - 1
        while j >= 0 and values[j] > v:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = v
    return values[n // 2]


def act(what, mod, hal):
    if what == "magnet on" or what == "magnet off":
        hal.magnet = what == "magnet on"
    elif what == "cover":
        hal.cover = not hal.cover
    elif what == "clock":
        mod.on_downlink(m.TimeSync(1, hal.unix_time() + 120, 0).encode())
    elif what == "limit":
        mod.on_downlink(m.SetLimit(2, 0, 0, 1, 6000).encode())
    elif what == "unlimit":
        mod.on_downlink(m.SetLimit(3, 0, 0, 1, 0).encode())
        mod.on_downlink(m.Relay(4, m.RELAY_AUTO, 0).encode())
    elif what == "shed":
        mod.on_downlink(m.GroupCmd(5, 5, 1, 3600).encode())
    elif what == "backfill":
        mod.on_downlink(m.BackfillReq(6, hal.unix_time() // 3600 - 48, 48).encode())
    elif what == "bad calendar":
        blob = BAD_CALENDAR
        step = m.ConfigChunk.TAIL_MAX
        for off in range(0, len(blob), step):
            mod.on_downlink(m.ConfigChunk(7, 1, 9, off, len(blob), blob[off:off + step]).encode())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "ram",
         int(sys.argv[4]) if len(sys.argv) > 4 else 1, int(sys.argv[5]) if len(sys.argv) > 5 else 0)
