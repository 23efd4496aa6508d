"""The real D100FC module's registers, archive and events survive an update and a rollback."""

import importlib
import os
import sys
from pathlib import Path

from firmware.common.ota import slots
from tests import d100fc_scenario as scenario

sys.path.insert(0, str(Path(__file__).parent / "mpy"))
world = importlib.import_module("ota_world")


def application_files(flash):
    """Every file outside ota/: what the module itself keeps in flash."""
    found = {}
    for root, _, names in os.walk(flash):
        rel = os.path.relpath(root, flash)
        if rel == "ota" or rel.startswith("ota" + os.sep):
            continue
        for name in names:
            found[os.path.join(rel, name)] = Path(root, name).read_bytes()
    return found


def test_registers_survive_an_update_and_a_rollback(tmp_path):
    flash = str(tmp_path / "flash")
    world.provision(flash, world.image(1), 1)
    hal, _, module = scenario.make(flash)
    pulses = scenario.run(hal, module, 600, rates=(300, 1100, 0))
    module.checkpoint()
    totals = [module.registers.total(ch) for ch in range(3)]
    assert totals[0] == 1000 + pulses[0] and totals[1] == pulses[1]
    kept = application_files(flash)
    assert len(kept) > len(world.KEEP)  # the module's own records are there too

    assert world.update(flash, world.bundle(world.image(2, extra=300), 2))  # installed and confirmed
    failing = world.bundle(world.image(3), 3)
    world.power_on(flash, failing)
    for _ in range(slots.MAX_TRIAL_BOOTS + 1):  # never confirms: back to image 2
        world.power_on(flash, failing, joined=False)
    assert slots.Slots(flash).load().seq == 2

    assert application_files(flash) == kept
    _, _, restarted = scenario.make(flash)
    assert [restarted.registers.total(ch) for ch in range(3)] == totals
