# Power-cut injection: LittleFS on a RamFlash that loses power after the k-th program or erase.
# After every cut the module boots from the flash as it was and its registers must be one of the
# checkpoints it was writing, never older than the last one completed and never ahead of the truth.
from d100fc_flash import MOUNT, mount
from tests.d100fc_scenario import make, two_tariff_calendar

START = 1780297200  # 2026-06-01 07:00 UTC, so the run crosses a tariff switch (09:00 CEST) and hours
STEP_S = 20
STEPS = 210  # 70 simulated minutes: checkpoints every minute, two hour boundaries, a tariff switch
CUT_POINTS = 300  # issue floor


def snapshot(mod):
    return [list(r) for r in mod.registers.value]


def scenario(dev, on_step=None):
    """Run the module on ``dev``; return (checkpoints as (snapshot, ops when done), pulses per step)."""
    hal, up, mod = make(MOUNT, START, calendar=two_tariff_calendar(), checkpoint_s=60)
    done = [(snapshot(mod), 0)]  # the boot's checkpoint holds the initial readings, as a blank flash does
    write = mod.checkpoint

    def checkpoint():
        snap = snapshot(mod)
        write()
        done.append((snap, dev.ops))

    mod.checkpoint = checkpoint
    truth = [1000, 0, 50]
    wake = mod.next_wakeup()
    for step in range(STEPS):
        for i in range(STEP_S):
            hal.advance(1)
            for ch in range(3):
                if (i + ch) % (ch + 2) == 0:
                    hal.pulse(ch)
                    truth[ch] += 1
            if hal.unix_time() >= wake:
                mod.tick()
                wake = mod.next_wakeup()
        if on_step is not None and on_step(truth):
            break
    return done, truth


def test_power_cuts_at_300_points_leave_valid_registers():
    fresh = mount()
    blank = bytes(fresh.data)
    done, _ = scenario(fresh)
    total_ops = fresh.ops
    assert total_ops >= CUT_POINTS, total_ops
    stride = total_ops // CUT_POINTS
    tried = kept_older = 0
    for k in range(0, stride * CUT_POINTS, stride):
        dev = mount(image=blank)
        dev.cut_after = k
        seen = []
        done, _ = scenario(dev, lambda truth: dev.image is not None and not seen.append(list(truth)))
        truth = seen[0]
        complete = [snap for snap, ops in done if ops <= k]
        possible = [snap for snap, ops in done[len(complete) - 1:len(complete) + 1]]  # last done, the one cut
        mount(image=dev.image)
        hal, up, mod = make(MOUNT, START + 3600)
        got = snapshot(mod)
        assert got in possible, (k, got, possible)
        for ch in range(3):
            assert sum(complete[-1][ch]) <= mod.registers.total(ch) <= truth[ch], (k, ch)
        tried += 1
        kept_older += got == possible[0] != possible[-1]
    assert tried == CUT_POINTS
    assert kept_older > 0  # some cuts did land inside a checkpoint write: the test can tell
