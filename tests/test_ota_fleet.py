"""The fleet model beside ``balans bench ota``: what it schedules must add up."""

import math

from firmware.common.ota import transfer
from firmware.common.ota.manifest import ENVELOPE_LEN, PAGE_HASH_LEN, PAGE_SIZE
from tools.flash import fleetmodel


def test_units_cover_envelope_table_and_image_and_loss_costs_time_and_air():
    image = 5000
    units = fleetmodel.units(image)
    pages = math.ceil(image / PAGE_SIZE)
    assert units[0] == (transfer.ENVELOPE, 0, ENVELOPE_LEN)
    assert sum(size for part, _, size in units if part == transfer.TABLE) == pages * PAGE_HASH_LEN
    assert sum(size for part, _, size in units if part == transfer.IMAGE) == image
    clean = fleetmodel.simulate(image, modules=30, depth=10, loss=0.0, seed=3)
    lossy = fleetmodel.simulate(image, modules=30, depth=10, loss=0.3, seed=3)
    assert clean["units"] == len(units)
    assert lossy["fleet_update_s"] > clean["fleet_update_s"] > fleetmodel.ACTIVATE_S
    assert lossy["airtime_s_max"] > clean["airtime_s_max"]
    assert clean["duty_cycle_ok"] and 0 < clean["battery_share"] < 0.01


def test_a_loss_free_chain_is_paced_by_spatial_reuse():
    # 5 modules in a chain: one sender per level, one child each
    image, depth = 2000, 5
    r = fleetmodel.simulate(image, modules=depth, depth=depth, loss=0.0)
    nack_s = fleetmodel.frame_s(fleetmodel.NACK_PAYLOAD)
    unit_s = [sum(fleetmodel.frame_s(fleetmodel.FRAGMENT_HEADER + min(fleetmodel.FRAGMENT, size - f))
                  for f in range(0, size, fleetmodel.FRAGMENT)) + nack_s for _, _, size in fleetmodel.units(image)]
    # levels within REUSE - 1 of each other take turns, so in steady state a unit leaves the chain
    # every REUSE unit times; the first unit also needs to cross the chain
    transfer_s = r["fleet_update_s"] - fleetmodel.ACTIVATE_S
    assert fleetmodel.REUSE * (sum(unit_s) - max(unit_s)) <= transfer_s
    assert transfer_s <= fleetmodel.REUSE * sum(unit_s) + depth * max(unit_s)
