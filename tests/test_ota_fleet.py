"""The fleet model behind ``balans bench ota``: what it schedules must add up."""

import math

from firmware.common.ota.manifest import ENVELOPE_LEN, PAGE_HASH_LEN, PAGE_SIZE
from tools.flash import fleetmodel


def test_pages_cover_envelope_table_and_image_and_loss_costs_time_and_air():
    image = 5000
    clean = fleetmodel.simulate(image, modules=30, depth=10, loss=0.0, seed=3)
    lossy = fleetmodel.simulate(image, modules=30, depth=10, loss=0.3, seed=3)
    pages = math.ceil(image / PAGE_SIZE)
    assert clean["pages"] == math.ceil((ENVELOPE_LEN + pages * PAGE_HASH_LEN + image) / PAGE_SIZE)
    assert lossy["fleet_update_s"] > clean["fleet_update_s"] > fleetmodel.ACTIVATE_S
    assert lossy["airtime_s_max"] > clean["airtime_s_max"]
    assert clean["duty_cycle_ok"] and 0 < clean["battery_share"] < 0.01


def test_a_loss_free_chain_takes_one_page_time_per_hop_plus_the_pipelined_rest():
    # 5 modules in a chain: one sender per level, one child each, so every page costs the same
    r = fleetmodel.simulate(2000, modules=5, depth=5, loss=0.0)
    page_s = 8 * fleetmodel.frame_s(fleetmodel.FRAGMENT_HEADER + fleetmodel.FRAGMENT) \
        + fleetmodel.frame_s(fleetmodel.NACK_PAYLOAD)
    # 5 stages with reuse 3: the last page leaves stage 1 after 3 page times per page, then crosses 4 more hops
    expected = (fleetmodel.REUSE * (r["pages"] - 1) + 5) * page_s + fleetmodel.ACTIVATE_S
    assert abs(r["fleet_update_s"] - expected) < page_s
