"""Register invariants under random operation sequences (hypothesis).

Total = sum of parts, every register monotonic, and no pulse lost or counted
twice across tariff switches, hour boundaries, clock changes, contract
penalties and reboots (each reboot preceded by the power-fail checkpoint).
"""

import tempfile

from hypothesis import given, settings, strategies as st

from firmware.common.benchhal import BenchHAL, RecordingUplink
from firmware.d100fc.calendar_blob import encode
from firmware.d100fc.module import Module
from protocol import messages as m
from tests.d100fc_scenario import config

START = 1774738800  # 2026-03-28 23:00 UTC: the EU spring-forward is a few hours away
# switches every few hours, so random runs cross many
BUSY = encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 1), (150, 2), (300, 3), (420, 4), (600, 1), (1000, 3)]},
              offset=60, shift=60, dst_start=(3, 5, 6, 120), dst_end=(10, 5, 6, 120))

ops = st.lists(st.one_of(
    st.tuples(st.just("pulses"), st.integers(0, 2), st.integers(1, 40)),
    st.tuples(st.just("wait"), st.integers(1, 5400)),
    st.tuples(st.just("clock"), st.integers(-7200, 7200)),
    st.tuples(st.just("reboot")),
), max_size=40)


def snapshot(mod):
    return [list(r) for r in mod.registers.value]


@settings(max_examples=40, deadline=None)
@given(ops, st.integers(0, 3000))
def test_registers_stay_exact_and_monotonic(steps, contract):
    with tempfile.TemporaryDirectory() as flash:
        chans = config()["channels"]
        chans[0]["contract"] = contract
        cfg = config(channels=chans, calendar=BUSY)
        hal = BenchHAL(flash, START)
        mod = Module(hal, cfg, RecordingUplink())
        mod.boot()
        truth = [1000, 0, 50]
        before = snapshot(mod)
        for op in steps:
            if op[0] == "pulses":
                tariff = mod.tariff
                assert tariff == mod.calendar.tariff_at(hal.unix_time())
                for _ in range(op[2]):
                    hal.advance(ms=7)
                    hal.pulse(op[1])
                truth[op[1]] += op[2]
            elif op[0] == "wait":
                left = op[1]
                while left > 0:  # wake as the module asks, never later
                    step = max(1, min(left, mod.next_wakeup() - hal.unix_time()))
                    hal.advance(step)
                    left -= step
                    mod.tick()
            elif op[0] == "clock":
                mod.on_downlink(m.TimeSync(1, hal.unix_time() + op[1], 0).encode())
            else:
                mod.power_fail()
                hal = BenchHAL(flash, hal.unix_time(), hal.ms)
                mod = Module(hal, cfg, RecordingUplink())
                mod.boot()
            mod.tick()
            now = snapshot(mod)
            if op[0] == "pulses":  # they went to the tariff in force, or above the contract to penalty
                ch = op[1]
                assert (now[ch][tariff - 1] - before[ch][tariff - 1]) + (now[ch][4] - before[ch][4]) == op[2]
            for ch in range(3):
                assert all(a <= b for a, b in zip(before[ch], now[ch]))
                assert mod.registers.total(ch) == sum(now[ch]) == truth[ch]
            before = now
