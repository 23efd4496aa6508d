# A power cut at every write of an update, on MicroPython's real LittleFS: a RAM block device,
# mounted with vfs.VfsLfs2, that tears the k-th program or erase in half and stops the run.
# MicroPython only (tests/mpy/conftest.py); tests/test_ota.py cuts power on CPython.
import ota_world as world
from firmware.common.ota.slots import Slots
from ota_world import MOUNT, power_up, provisioned

NEW = world.bundle(world.image(2, extra=300), 2)


def update_through_cuts(flash):
    for _ in range(8):
        try:
            if world.update(MOUNT, NEW):
                return True
        except Exception:
            if not flash.device.dead:
                raise
            power_up(flash)
    return False


def test_an_uncut_update_runs_and_counts_its_writes():
    flash = provisioned()
    assert update_through_cuts(flash)
    assert world.running_version(Slots(MOUNT).boot()) == 2 and world.kept_intact(MOUNT)
    assert flash.writes > 30


def test_a_power_cut_at_every_write_ends_on_a_valid_image():
    total = 0
    cut_at = 1
    while True:
        flash = provisioned()
        flash.cut_at = cut_at
        assert update_through_cuts(flash), "no update after a cut at write %d" % cut_at
        power_up(flash)
        assert world.running_version(Slots(MOUNT).boot()) == 2, cut_at
        assert world.kept_intact(MOUNT)
        if flash.writes < cut_at:
            break  # the update finished before the cut: every stage has been cut
        total += 1
        cut_at += 1
    print("cut", total, "times over", cut_at, "writes")
    assert total > 10
