# A failing flash must not stop the metering: LittleFS on a RamFlash whose programs and erases fail (EIO).
# The module goes on counting and reporting from RAM, flags its reports, and saves again once the flash works.
from d100fc_flash import MOUNT, mount
from firmware.common.benchhal import BenchHAL, RecordingUplink
from firmware.d100fc.module import Module
from protocol import messages as m
from tests.d100fc_scenario import config, decoded, make, run

START = 1780272000  # 2026-06-01 00:00 UTC


def test_a_failing_flash_keeps_metering_and_recovers():
    dev = mount()
    hal, up, mod = make(MOUNT, START, checkpoint_s=60)
    run(hal, mod, 1800, rates=(1000, 0, 0), step_ms=500)
    saved = mod.checkpoints
    dev.failing = True
    # Two hours on a failing flash: no exception escapes tick(); counting and reporting go on.
    sent = run(hal, mod, 7200, rates=(1000, 4000, 0), step_ms=500)
    assert mod.checkpoints == saved
    # tried again once a checkpoint interval (and at each hour), not at every wake
    assert 0 < mod.flash_errors <= 2 * 7200 // 60 + 10, mod.flash_errors
    hourly = decoded(up, m.Hourly)
    assert len(hourly) == 2 and all(h.flags & m.FLAG_FLASH_FAULT for h in hourly)
    assert hourly[-1].totals[0] == 1000 + 1800 + 5400  # every pulse up to 02:00, none lost
    assert mod.registers.total(1) == sent[1]
    # The flash works again: the next checkpoint is written and reports are clean.
    dev.failing = False
    errors = mod.flash_errors
    run(hal, mod, 5400, rates=(1000, 0, 0), step_ms=500)  # to 04:00: the 03:00 report still tells of 02:00-02:30
    assert mod.flash_errors == errors and mod.checkpoints > saved
    assert not decoded(up, m.Hourly)[-1].flags & m.FLAG_FLASH_FAULT
    # What was saved is what a reboot finds.
    mod.power_fail()
    mod2 = Module(BenchHAL(MOUNT, hal.unix_time()), config(checkpoint_s=60), RecordingUplink())
    mod2.boot()
    assert [mod2.registers.total(ch) for ch in range(3)] == [mod.registers.total(ch) for ch in range(3)]
