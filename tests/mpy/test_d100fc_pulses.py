# The pulse interrupt path and the module on real MicroPython.
import micropython

from d100fc_flash import MOUNT, mount
from firmware.d100fc.pulses import PulseInputs
from tests.d100fc_scenario import make, run


def test_interrupt_handler_allocates_nothing_over_a_burst():
    inputs = PulseInputs([5, 5, 5])
    inputs.arm(0)
    handler = inputs.on_edge  # bound once, as pulse_attach does
    t = 1000
    n = 0
    micropython.heap_lock()
    try:
        while n < 12000:  # 4000 edges per channel at 100 Hz, each followed by bounce
            ch = n % 3
            handler(ch, t)
            handler(ch, t + 1)
            n += 1
            if ch == 2:
                t += 10
    finally:
        micropython.heap_unlock()
    assert [inputs.drain(ch) for ch in range(3)] == [4000, 4000, 4000]


def test_counters_wrap_without_losing_pulses():
    inputs = PulseInputs([0, 0, 0])
    inputs._count[0] = 0x3FFFFFFF - 5  # just below the 2**30 wrap
    inputs._drained[0] = 0x3FFFFFFF - 5
    for t in range(20):
        inputs.on_edge(0, 0x3FFFFFF0 + t * 3)  # ticks wrap too
    assert inputs.drain(0) == 20


def test_three_channels_at_100_hz_count_exactly_on_littlefs():
    mount()
    hal, up, mod = make(MOUNT, 1780272000)
    sent = run(hal, mod, 60, rates=(10, 10, 10), step_ms=10)
    assert sent == [6000, 6000, 6000]
    assert [mod.registers.total(ch) for ch in range(3)] == [1000 + 6000, 6000, 50 + 6000]
