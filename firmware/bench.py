"""``balans bench firmware``: the D100FC module on the real MicroPython unix port.

Figures (x86-64 unix port; a board's MCU is slower, its pointers half as wide):
- ``mpy_bytes``: the compiled module image (firmware/d100fc, the shared firmware code it
  imports, all of protocol/ that runs on boards), against the 64 KB target.
- ``heap_peak_bytes``: the smallest ``-X heapsize`` on which the simulated week (pulses on
  three channels, tariff switches, checkpoints, hourly reports, every event) runs; on the unix
  port that heap also holds the imported bytecode and qstrs, which a board keeps in flash.
  ``heap_romfs_bytes`` is the same with the compiled modules in a ROMFS image mounted as
  ``vfs.VfsRom`` (bytecode runs in place, as from a board's ROMFS partition), minus the image;
  ``romfs_week_runs_in_64k`` whether the week runs with exactly 64 KB beside the image. Both
  smallest heaps come from a downward scan in 4 KB steps (the week runs on that heap and every
  step above it); ``heap_runtime_bytes`` is the live heap after the imports
  (sampled hourly after a collection).
- ``hour_cpu_ms``: time of one simulated hour's ticks, the median hour of the week on the
  RamFlash LittleFS (so LittleFS's work counts and the host disk's does not; pulse
  interrupts excluded; wall time, as the unix port has no CPU clock); ``isr_us``: one pulse
  interrupt; ``hour_cpu_ms_cpython``: the same work hosted on CPython, as in the simulator.
- ``erases_per_day``: LittleFS erases on a 64 x 4 KB RamFlash over the week, against a
  baseline that checkpoints every minute; ``flash_life_years`` from the most-erased block at
  100,000 cycles (typical SPI NOR endurance).
- ``max_pulse_hz``: the highest rate per channel, on all three channels at once, counted
  exactly (the debounce set to its 1 ms minimum), and never above the interrupt-cost bound.
"""

import json
import os
import subprocess
import tempfile
import time

from balans.toolchain import REPO, tool

# the module's image: what a board flashes (calendar_blob is the head-end's builder, weekrun the bench driver)
IMAGE_DIRS = ("firmware/d100fc", "protocol")
IMAGE_FILES = ("firmware/__init__.py", "firmware/common/__init__.py", "firmware/common/hal.py",
               "firmware/common/records.py")
NOT_IN_IMAGE = ("firmware/d100fc/calendar_blob.py", "protocol/batch.py", "protocol/cose.py")
TARGET_MPY = 64 * 1024
TARGET_HEAP = 64 * 1024
ENDURANCE = 100000  # erase cycles per block, typical SPI NOR
HEAP_STEP = 4096
HEAP_SCAN_FROM = 100 * 1024  # the scans for the smallest heap start a little above the last figures
HEAP_SCAN_FROM_ROMFS = 72 * 1024

ISR_SCRIPT = """
import time
from firmware.d100fc.pulses import PulseInputs
p = PulseInputs([1, 1, 1]); p.arm(0); h = p.on_edge
n = 0; t0 = time.ticks_us()
while n < 300000:
    h(n % 3, n)
    n += 1
print(time.ticks_diff(time.ticks_us(), t0) / 300000)
"""

RATE_SCRIPT = """
from firmware.common.benchhal import BenchHAL
from firmware.d100fc.module import Module
class Up:
    def send(self, p, urgent=False, backfill=False): return True
for hz in (100, 200, 250, 500, 1000):
    hal = BenchHAL(%r)
    chans = [{"resource": "electricity", "pulse_const": 10000, "debounce_ms": 1} for _ in range(3)]
    mod = Module(hal, {"addr": 1, "channels": chans}, Up()); mod.boot()
    period = 1000000 // hz  # microseconds
    us = 0
    for i in range(hz * 10):
        us += period
        hal.ms = us // 1000
        for ch in range(3):
            hal.pulse(ch)
        if i %% hz == 0:
            mod.tick()
    mod.tick()
    print(hz, all(mod.registers.total(ch) == hz * 10 for ch in range(3)))
"""


def build_mpy(out):
    """Compile the firmware to .mpy under ``out``; return the image size in bytes."""
    image = 0
    for top in ("firmware", "protocol"):
        for dirpath, _, files in os.walk(REPO / top):
            for name in files:
                if not name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), REPO)
                if rel in ("protocol/batch.py", "protocol/cose.py") or rel == "firmware/bench.py":
                    continue
                target = os.path.join(out, rel[:-3] + ".mpy")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                subprocess.run([tool("mpy-cross"), "-o", target, rel], cwd=REPO, check=True)
                if rel not in NOT_IN_IMAGE and (rel in IMAGE_FILES or rel.startswith(IMAGE_DIRS)):
                    image += os.path.getsize(target)
    return image


def _mp(build, args, heap, cwd):
    env = dict(os.environ, MICROPYPATH=build)
    return subprocess.run([tool("micropython"), "-X", "heapsize=%d" % heap] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


ROMFS_LAUNCH = """
import sys, vfs
f = open(%r, "rb")
image = bytearray(%d)  # one allocation: read() would grow a buffer and fragment the heap
f.readinto(image)
f.close()
vfs.mount(vfs.VfsRom(image), "/rom")
sys.path.insert(0, "/rom")
from firmware.weekrun import main
main(%d, %r, False, 1, 0)
"""
# what the week run imports: the image a board would carry, plus the bench HAL and the driver
ROMFS_TREE = ("firmware/__init__.mpy", "firmware/weekrun.mpy", "firmware/common/__init__.mpy",
              "firmware/common/benchhal.mpy", "firmware/common/records.mpy", "firmware/common/ramflash.mpy",
              "firmware/common/hal.mpy", "firmware/d100fc/",
              "protocol/__init__.mpy", "protocol/compat.mpy", "protocol/errors.mpy", "protocol/messages.mpy",
              "protocol/obis.mpy", "protocol/tesla.mpy")
ROMFS_MAGIC = b"\xd2\xcd\x31"  # the varint of MicroPython's ROMFS header record kind
ROM_DATA, ROM_DIR, ROM_FILE = 2, 4, 5  # record kinds


def _varint(value):
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.insert(0, 0x80 | (value & 0x7F))
        value >>= 7
    return bytes(out)


def _record(kind, payload):
    return _varint(kind) + _varint(len(payload)) + payload


def romfs_image(build, path):
    """Write a ROMFS image of the week run's compiled modules under ``build`` to ``path``; return its size."""

    def tree(rel):
        body = b""
        for name in sorted(os.listdir(os.path.join(build, rel))):
            sub = os.path.join(rel, name) if rel else name
            wanted = any(sub.startswith(t) or t.startswith(sub + "/") for t in ROMFS_TREE)
            if not wanted:
                continue
            named = _varint(len(name)) + name.encode()
            if os.path.isdir(os.path.join(build, sub)):
                body += _record(ROM_DIR, named + tree(sub))
            else:
                with open(os.path.join(build, sub), "rb") as f:
                    body += _record(ROM_FILE, named + _record(ROM_DATA, f.read()))
        return body

    body = tree("")
    with open(path, "wb") as f:
        f.write(ROMFS_MAGIC + _varint(len(body)) + body)
    return len(ROMFS_MAGIC + _varint(len(body)) + body)


def week_run(build, days, heap, extra=(), must=True, romfs=None):
    """The week run's figures; None if it failed and ``must`` is False. ``romfs``: import from that image."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(days), extra[0] if extra else tmp] + list(extra[1:])
        if romfs:
            proc = _mp(build, ["-c", ROMFS_LAUNCH % (romfs, os.path.getsize(romfs), days, tmp)], heap, tmp)
        else:
            proc = _mp(build, ["-m", "firmware.weekrun"] + args, heap, tmp)
    if proc.returncode:
        if must:
            raise RuntimeError("the simulated week failed:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _smallest_heap(build, days, start, romfs=None):
    """The smallest heap such that the week runs on it and on every HEAP_STEP above it, from ``start`` down.

    Success is not monotonic in the heap size (where the collector runs moves the
    fragmentation), so a bisection could land on a lucky size; a downward scan cannot.
    """
    heap = start
    while week_run(build, days, heap, must=False, romfs=romfs) is None:  # start too small: go up
        heap += 2 * HEAP_STEP
    while heap - HEAP_STEP > 0 and week_run(build, days, heap - HEAP_STEP, must=False, romfs=romfs) is not None:
        heap -= HEAP_STEP
    return heap


def firmware(args):
    days = 1 if args.quick else 7
    with tempfile.TemporaryDirectory() as build:
        mpy = build_mpy(build)
        run = week_run(build, days, 1024 * 1024)
        flash = week_run(build, days, 1024 * 1024, ["/ramfl", "ram"])
        baseline = week_run(build, 1, 1024 * 1024, ["/ramfl", "ram", "1", "60"])
        heap = _smallest_heap(build, days, HEAP_SCAN_FROM)
        image = os.path.join(build, "week.romfs")
        image_bytes = romfs_image(build, image)
        heap_romfs = _smallest_heap(build, days, image_bytes + HEAP_SCAN_FROM_ROMFS, image) - image_bytes
        romfs_64k = week_run(build, days, image_bytes + TARGET_HEAP, romfs=image, must=False) is not None
        with tempfile.TemporaryDirectory() as tmp:
            isr_us = float(_mp(build, ["-c", ISR_SCRIPT], 1024 * 1024, tmp).stdout.split()[-1])
            rates = _mp(build, ["-c", RATE_SCRIPT % tmp], 1024 * 1024, tmp).stdout.split("\n")
        after_imports = _mp(build, ["-c", "import gc\nfrom firmware.d100fc.module import Module\n"
                                    "from firmware.common.benchhal import BenchHAL\ngc.collect()\n"
                                    "print(gc.mem_alloc())"], 1024 * 1024, build).stdout.split()[-1]
    if not (run["exact"] and flash["exact"]):
        raise RuntimeError("the simulated week miscounted pulses")
    exact = [int(line.split()[0]) for line in rates if line.endswith("True")]
    cpu_bound_hz = int(1e6 / (3 * isr_us))
    per_day = flash["erases"] / days
    worst_per_day = flash["max_block_erases"] / days
    cpython_hour_ms = _cpython_hour_ms()
    return {
        "days": days,
        "pulses": run["pulses"],
        "mpy_bytes": mpy,
        "mpy_vs_64k": round(mpy / TARGET_MPY, 3),
        "heap_peak_bytes": heap,
        "heap_vs_64k": round(heap / TARGET_HEAP, 3),
        "heap_romfs_bytes": heap_romfs,
        "heap_romfs_vs_64k": round(heap_romfs / TARGET_HEAP, 3),
        "romfs_week_runs_in_64k": romfs_64k,
        "heap_runtime_bytes": run["live_heap_peak"] - int(after_imports),
        "hour_cpu_ms": round(flash["hour_cpu_ms"], 3),
        "hour_cpu_ms_cpython": round(cpython_hour_ms, 3),
        "isr_us": round(isr_us, 3),
        "erases_per_day": round(per_day, 1),
        "erases_per_day_checkpoint_every_minute": baseline["erases"],
        "erases_vs_baseline": round(baseline["erases"] / per_day, 2),
        "flash_life_years": round(ENDURANCE / worst_per_day / 365, 1),
        "max_pulse_hz": min(max(exact), cpu_bound_hz) if exact else 0,
        "cpu_bound_pulse_hz": cpu_bound_hz,
    }


def _cpython_hour_ms():
    """The median hour of a day's ticks hosted on CPython (as in the simulator), for comparison."""
    from firmware.common.benchhal import BenchHAL
    from firmware.d100fc.module import Module
    from firmware.weekrun import CONFIG, TWO_TARIFF, CountingUplink

    with tempfile.TemporaryDirectory() as tmp:
        hal = BenchHAL(tmp)
        cfg = dict(CONFIG, calendar=TWO_TARIFF)
        mod = Module(hal, cfg, CountingUplink())
        mod.boot()
        hours = [0.0] * 24
        for minute in range(24 * 60):
            hal.advance(60)
            for _ in range(160):  # 3 kW at 3200 imp/kWh: 160 pulses a minute
                hal.pulse(0)
            t0 = time.process_time()
            mod.tick()
            hours[minute // 60] += time.process_time() - t0
    return sorted(hours)[12] * 1000


# A relay's MicroPython work between a frame's end and its acknowledgement handed to the radio (the header
# taken apart, the ACK sealed): balans bench mcu's ack_ready on the 80 MHz board, 9.0-9.9 ms. The ACK itself
# goes at ACK_DELAY_MS (mesh/mac.py): the board HAL holds it until then.
MCU_ACK_WORK_US = 10000


def radio(args):
    """``balans bench radio``: the real board HAL's receiver schedule on an emulated CC1101.

    The board HAL (firmware/common/boardhal.py) and CC1101 driver run against the register-level
    emulator simulator/cc1101.py, sampling as a router at depth 3 does (board.listen_plan).
    Figures: ``rx_share_idle`` and ``rx_ua_idle``, the receiver's on-time and average current
    with no traffic, against the baseline of a receiver always on (``rx_ua_always_on``,
    ``rx_saving_ratio``); ``woken_heard``, the share of frames sent with the wake preamble
    towards a sample that arrive, and ``unwoken_heard``, of frames sent without one between
    samples (those must not: the router sleeps); ``rx_ms_per_unicast``, the receiver's time per
    unicast sent and acknowledged ACK_DELAY_MS later, beside what the simulator charges
    (``sim_rx_ms_per_unicast``: ACK_WAIT_S and the ACK's airtime); ``rx_ms_per_received_unicast``,
    the receiver's time per report that arrives with the wake preamble at a sample and is
    acknowledged after MCU_ACK_WORK_US of the station's work (at ACK_DELAY_MS), beside the
    simulator's charge (``sim_rx_ms_per_received_unicast``: the frame's airtime with the whole preamble).
    """
    import random

    from firmware.common.boardhal import BoardHAL
    from firmware.common.cc1101 import CC1101
    from firmware.common.mesh.control import ACK_LEN
    from firmware.common.mesh.mac import (ACK_DELAY_MS, BROADCAST_CHANNEL, SUPERFRAME_MS, WAKE_PREAMBLE_MS,
                                          airtime_us, slot_phase, unicast_channel, unicast_phase)
    from protocol.frame import F_ACK_REQ, T_ACK, T_DATA, Frame, seal_frame
    from simulator.cc1101 import RTC, CC1101Emu, Clock
    from simulator.energy import ACK_WAIT_S, RX_MA

    addr, depth, key = 0x0042, 3, bytes(16)
    phases = ((unicast_phase(addr), unicast_channel(addr)), (slot_phase(depth), BROADCAST_CHANNEL))
    rng = random.Random(1)
    seconds = 600 if getattr(args, "quick", False) else 3600

    def board():
        clock = Clock()
        emu = CC1101Emu(clock)
        hal = BoardHAL(CC1101(emu, emu.select, emu.gdo0_level, clock), clock, RTC(clock))
        hal.radio_listen()
        return hal, emu, clock

    def frame(kind, n):
        f = Frame(0x4242, kind, 7, addr, n, bytes(39 if kind == T_DATA else ACK_LEN))
        return bytes(seal_frame(f, key))

    def idle_until(hal, clock, end_us):
        heard = []
        while clock.us < end_us:
            if hal.idle(max(1, (end_us - clock.us) // 1000), SUPERFRAME_MS, phases, 0):
                heard.append(hal.radio_receive())
        return heard

    hal, emu, clock = board()
    idle_until(hal, clock, seconds * 1000000)
    rx_share = emu.rx_time_us() / clock.us

    hal, emu, clock = board()
    woken = unwoken = 0
    for n in range(50):
        superframe = (n + 1) * 10 * SUPERFRAME_MS * 1000
        sample = superframe + phases[n % 2][0] * 1000
        lead = rng.randint(1000, WAKE_PREAMBLE_MS * 1000 - 3000)  # the sender's rendezvous error
        emu.incoming(frame(T_DATA, 2 * n), at=sample - lead, preamble_us=WAKE_PREAMBLE_MS * 1000)
        emu.incoming(frame(T_DATA, 2 * n + 1), at=superframe + rng.choice((600, 1600)) * 1000)  # between
        got = idle_until(hal, clock, superframe + SUPERFRAME_MS * 1000)
        woken += frame(T_DATA, 2 * n) in got
        unwoken += frame(T_DATA, 2 * n + 1) in got

    hal, emu, clock = board()
    on_before = emu.rx_time_us()
    for n in range(50):
        idle_until(hal, clock, (n + 1) * SUPERFRAME_MS * 1000)
        hal.radio_send(frame(T_DATA | F_ACK_REQ, n), cca=False)
        emu.incoming(frame(T_ACK, n), at=clock.us + ACK_DELAY_MS * 1000)
        idle_until(hal, clock, clock.us + 60000)
    sampling = emu.rx_time_us() - on_before  # the samples in between included, taken off below
    per_unicast_ms = (sampling - rx_share * clock.us) / 50 / 1000
    ack_airtime_ms = airtime_us(frame(T_ACK, 0)) / 1000

    hal, emu, clock = board()  # a relay's side: a report woken at its sample, then its acknowledgement
    for n in range(50):
        superframe = (n + 1) * 10 * SUPERFRAME_MS * 1000
        lead = rng.randint(1000, WAKE_PREAMBLE_MS * 1000 - 3000)
        emu.incoming(frame(T_DATA | F_ACK_REQ, n), at=superframe + phases[0][0] * 1000 - lead,
                     preamble_us=WAKE_PREAMBLE_MS * 1000)
        while clock.us < superframe + SUPERFRAME_MS * 1000:
            if hal.idle(max(1, (superframe + SUPERFRAME_MS * 1000 - clock.us) // 1000), SUPERFRAME_MS, phases, 0):
                hal.radio_receive()
                clock.sleep_us(MCU_ACK_WORK_US)
                hal.radio_send(frame(T_ACK, 100 + n), cca=False)
    per_received_ms = (emu.rx_time_us() - rx_share * clock.us) / 50 / 1000
    woken_airtime_ms = airtime_us(frame(T_DATA | F_ACK_REQ, 0)) / 1000
    return {
        "rx_share_idle": round(rx_share, 5),
        "rx_ua_idle": round(rx_share * RX_MA * 1000, 1),
        "rx_ua_always_on": RX_MA * 1000,
        "rx_saving_ratio": round(1 / rx_share),
        "woken_heard": woken / 50,
        "unwoken_heard": unwoken / 50,
        "rx_ms_per_unicast": round(per_unicast_ms, 1),
        "rx_ms_per_unicast_ratio_to_sim": round(per_unicast_ms / (ACK_WAIT_S * 1000 + ack_airtime_ms), 2),
        "sim_rx_ms_per_unicast": round(ACK_WAIT_S * 1000 + ack_airtime_ms, 1),
        "rx_ms_per_received_unicast": round(per_received_ms, 1),
        "sim_rx_ms_per_received_unicast": round(woken_airtime_ms, 1),
        "simulated_s": seconds,
    }


# A board's MicroPython speed in pystones a second: 1,521.6 on a SAMD51 Cortex-M4F at 120 MHz under
# CircuitPython (adafruit/circuitpython commit 568636d: pystone from Python 3.4, 5,000 passes), scaled by
# clock to the 80 MHz Cortex-M4 whose 8 mA simulator/energy.py charges (MCU_ACTIVE_MA, ~100 uA/MHz).
BOARD_PYSTONES = 1521.6 * 80 / 120
# CPython shipped pystone.py in Lib/test up to 3.6; the bench runs it under MicroPython beside the firmware.
PYSTONE_GLOBS = ("~/.pyenv/versions/3.*/lib/python3.*/test/pystone.py", "/usr/lib/python3*/test/pystone.py",
                 "/usr/local/lib/python3*/test/pystone.py")


def _pystone_dir():
    import glob

    for pattern in PYSTONE_GLOBS:
        for path in sorted(glob.glob(os.path.expanduser(pattern))):
            return os.path.dirname(path)
    raise RuntimeError("pystone.py not found (CPython 3.0-3.6 Lib/test): " + ", ".join(PYSTONE_GLOBS))


def mcu(args):
    """``balans bench mcu``: a relay's MicroPython work per radio event, on a board, beside the simulator's charge.

    firmware/bench_mcu_micropython.py runs the real stations on the MicroPython unix port (concentrator -
    relay - leaf) and times the relay's poll() per event, and, in a fresh process, the pystone benchmark;
    an event's time is counted in pystones, which BOARD_PYSTONES turns into milliseconds on the 80 MHz
    Cortex-M4 the simulator charges. Three rounds of both, alternated; the median round.
    Events: ``frame_in_ack_out`` (a report to relay taken and acknowledged), ``ack_ready`` (from the same
    poll's start until it hands the ACK to the radio: how late the ACK would go, against
    mac.ACK_DELAY_MS), ``ack_in`` (its parent's acknowledgement opened), ``timer_send`` (a timer
    wake that forwards the queued report), ``timer_idle`` (a mesh timer wake with nothing to send).
    ``sim_*``: what simulator/energy.py charges for the same (MCU_FRAME_S, MCU_SEND_S, MCU_WAKE_S).
    """
    from firmware.common.mesh.mac import ACK_DELAY_MS
    from simulator.energy import MCU_FRAME_S, MCU_SEND_S, MCU_WAKE_S

    frames = 20 if getattr(args, "quick", False) else 100
    where = _pystone_dir()

    def run(*what):
        proc = subprocess.run([tool("micropython"), str(REPO / "firmware" / "bench_mcu_micropython.py"), str(REPO)]
                              + [str(w) for w in what], capture_output=True, text=True, timeout=600)
        if proc.returncode:
            raise RuntimeError("bench_mcu_micropython.py failed: " + proc.stderr[-500:])
        return json.loads(proc.stdout.splitlines()[-1])

    rounds = []
    for _ in range(3):
        rate = run("pystone", where)["pystones_per_s"]
        rounds.append((rate, run("events", frames)))
    rounds.sort(key=lambda r: r[0])
    rate, us = rounds[1]
    charged = {"frame_in_ack_out": MCU_FRAME_S + MCU_SEND_S, "ack_in": MCU_FRAME_S,
               "timer_send": MCU_WAKE_S + MCU_SEND_S, "timer_idle": MCU_WAKE_S}
    figures = {"host_pystones_per_s": round(rate), "board_pystones_per_s": round(BOARD_PYSTONES)}
    for name, seconds in charged.items():
        pystones = us[name] * rate / 1e6
        figures[name + "_us_host"] = us[name]
        figures[name + "_pystones"] = round(pystones, 2)
        figures[name + "_ms"] = round(pystones / BOARD_PYSTONES * 1000, 1)
        figures["sim_" + name + "_ms"] = round(seconds * 1000, 1)
    # How late after a frame's end its acknowledgement is ready to go, against when it goes (ACK_DELAY_MS)
    pystones = us["ack_ready"] * rate / 1e6
    figures["ack_ready_us_host"] = us["ack_ready"]
    figures["ack_ready_pystones"] = round(pystones, 2)
    figures["ack_ready_ms"] = round(pystones / BOARD_PYSTONES * 1000, 1)
    figures["ack_delay_ms"] = ACK_DELAY_MS
    return figures


BENCHMARKS = {"firmware": firmware, "radio": radio, "mcu": mcu}
