"""The MicroPython half of ``balans bench mcu``: a relay's own work per radio event, and pystones a second.

``micropython firmware/bench_mcu_micropython.py <repo> events <frames>``: the real MeshRoot and
MeshNode stations on tests/mpy/mesh_air.py's lossless air, a chain concentrator - relay - leaf; the
leaf sends ``frames`` reports and the relay's poll() is timed by what it did. Prints one JSON line:
event -> microseconds.

``micropython firmware/bench_mcu_micropython.py <repo> pystone <dir of pystone.py>``: the pystone
benchmark (CPython's Lib/test/pystone.py) in a fresh process, as a board runs it; prints its rate.

Both take the fast quarter of many short runs (events: the 25th percentile of times; pystone: the 75th
of rates, 200 loops a run): on a shared host another process's time slice lands in some runs and
makes them several times slower, and the fast quarter is the host's unloaded speed. The garbage
collector runs before each timed run and not in it: on the unix port a collection scans megabytes,
three stations and the air; a board's collection of its 64 KB heap, every few tens of frames, is not
counted.
"""

import gc
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/tests/mpy")

JOIN_MS = 600000  # Trickle, the join request and its answer (tests/mpy/test_mesh_stations.py)
REPORT_MS = 20000  # one report's way up and its acknowledgements
REPORT = b"\x99" + bytes(32)  # an hourly report's size
PYSTONE_RUNS = 101
PYSTONE_LOOPS = 200


def quantile(values, q):
    values = sorted(values)
    return values[int(q * (len(values) - 1))]


def event(rx_kinds, sent):
    """What a poll was: a frame to relay (with its acknowledgement), an ACK, or a timer (sending or not)."""
    from protocol.frame import T_ACK, T_DATA

    if T_DATA in rx_kinds:
        return "frame_in_ack_out" if sent == 1 else None
    if T_ACK in rx_kinds:
        return "ack_in" if sent == 0 else None
    if not rx_kinds:
        return "timer_send" if sent == 1 else "timer_idle" if sent == 0 else None
    return None


def events(frames):
    from mesh_air import Air
    from protocol.frame import T_ACK

    air = Air(((0, 1), (1, 2)))
    air.run(JOIN_MS)
    relay, leaf = air.stations[1], air.stations[2]
    poll = relay.poll
    send = relay.hal.radio_send
    times = {}
    started = [0, None]  # the timed poll's start; when it handed an acknowledgement to the radio

    def sending(frame, cca=True, preamble_ms=None):
        if frame[3] & 0x0F == T_ACK:
            started[1] = time.ticks_diff(time.ticks_us(), started[0])
        return send(frame, cca, preamble_ms)

    def timed():
        kinds = [buf[3] & 0x0F for buf in relay.hal.rx]
        sent = relay.sent
        started[1] = None
        gc.collect()
        gc.disable()
        t = started[0] = time.ticks_us()
        poll()
        us = time.ticks_diff(time.ticks_us(), t)
        gc.enable()
        name = event(kinds, relay.sent - sent)
        if name is not None:
            times.setdefault(name, []).append(us)
            if name == "frame_in_ack_out":
                times.setdefault("ack_ready", []).append(started[1])

    relay.poll = timed
    relay.hal.radio_send = sending
    for _ in range(frames):
        leaf.uplink.send(REPORT, urgent=True)
        air.run(REPORT_MS)
    print(json.dumps({name: quantile(us, 0.25) for name, us in times.items()}))


def pystones(where):
    sys.path.insert(0, where)
    import pystone

    rates = []
    for _ in range(PYSTONE_RUNS):
        gc.collect()
        rates.append(pystone.pystones(PYSTONE_LOOPS)[1])
    print(json.dumps({"pystones_per_s": quantile(rates, 0.75)}))


if sys.argv[2] == "events":
    events(int(sys.argv[3]))
else:
    pystones(sys.argv[3])
