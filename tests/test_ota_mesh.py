"""An update in real T_OTA frames over the simulated mesh, the real firmware on every node
(tools/flash/fleetsim.py): it crosses a chain hop by hop and every module ends on a valid image
with its own files intact, whatever a relay, a power cut or a weak battery does on the way."""

import hashlib

from firmware.common.ota import archive, transfer
from firmware.common.ota.meshota import CHILD_LOST_MS, OTA_AIR_MS
from firmware.common.ota.slots import MAX_TRIAL_BOOTS, Slots
from firmware.d100fc.board import SELF_TEST_S
from protocol import messages
from tools.flash import fleetsim

IMAGE = archive.pack([("app.py", b"VERSION = 2\n"), ("lib/data.bin", bytes(i * 7 & 0xFF for i in range(1500)))])
KEEP = b"registers and keys the update must not touch"


def fleet(modules=6, seed=7):
    """Seed 7: every hop of its 6-module chain stays 3 dB or more above the receiver's sensitivity over the
    hours a test runs (seed 1 has a hop that fades from -101 to -112 dBm: whether the modules beyond it came
    back after the switch within the test's time depended on when the switch fell, not on the update)."""
    f = fleetsim.FleetRun("chain", modules, seed, IMAGE)
    for node in f.world.nodes[1:]:
        with open(node.hal.flash_path() + "/registers.bin", "wb") as out:
            out.write(KEEP)
    assert f.join() < 3600
    return f


def by_addr(f, addr):
    return f.world.by_addr[addr]


def on_new_image(f, node):
    slots = Slots(node.hal.flash_path())
    state = slots.load()
    with open(node.hal.flash_path() + "/registers.bin", "rb") as kept:
        intact = kept.read() == KEEP
    return state.seq == 1 and not state.trial and slots.slot_intact(state.active) and intact


def test_an_update_crosses_six_hops_in_real_frames_and_every_module_confirms_it():
    f = fleet()
    try:
        f.start()
        f.run_until_done(3 * 3600)
        figures = f.figures()
        assert figures["depth"] == 6 and figures["installed"] == 6, figures
        assert all(on_new_image(f, n) for n in f.world.nodes[1:])
        digest = hashlib.sha256(IMAGE).digest()
        for n in f.world.nodes[1:]:
            with open(Slots(n.hal.flash_path()).slot_dir(Slots(n.hal.flash_path()).load().active) + "/.sha256",
                      "rb") as d:
                assert d.read() == digest
        # OTA frames keep to their share of the 10 % duty cycle
        assert 0 < figures["duty_cycle_max"] <= OTA_AIR_MS / 3600000
        # nobody switched before the stand-in agent's ACTIVATE said, then hop by hop outward from the concentrator
        assert min(f.rebooted.values()) >= f.activated_at + transfer.ACTIVATE_S - 30
        assert sorted(f.rebooted, key=f.rebooted.get) == [1, 2, 3, 4, 5, 6]  # the chain's order
        f.world.run(f.world.now + 1800)  # reports leave within 10 minutes, outcomes again 10 minutes later
        states = {(a, r.state) for _, a, r in f.reports}
        assert all((n.addr, messages.OTA_INSTALLED) in states for n in f.world.nodes[1:])
    finally:
        f.close()


def test_a_relay_that_corrupts_a_page_is_refused_by_the_next_hop_and_the_page_comes_again():
    f = fleet()
    try:
        relay, child = by_addr(f, 2), by_addr(f, 3)
        honest = relay.mesh.ota.store.unit
        served_bad = []

        def corrupting(part, index):
            """Page 3 comes out with its last byte flipped until the next hop has refused it once."""
            data = honest(part, index)
            if part == transfer.IMAGE and index == 3 and data is not None and not child.mesh.ota.store.rejected:
                served_bad.append(index)
                return data[:-1] + bytes([data[-1] ^ 0xFF])
            return data
        relay.mesh.ota.store.unit = corrupting
        f.start()
        w = f.world
        while not child.mesh.ota.store.rejected and w.now < 3 * 3600:
            w.run(w.now + 10)
        assert served_bad and child.mesh.ota.store.rejected == 1
        assert by_addr(f, 4).mesh.ota.store.rejected == 0  # it never went further
        f.run_until_done(3 * 3600)
        assert all(on_new_image(f, n) for n in f.world.nodes[1:])
    finally:
        f.close()


def test_a_relay_that_loses_power_resumes_from_its_saved_bitmap():
    f = fleet()
    try:
        relay = by_addr(f, 3)
        f.start()
        w = f.world
        while w.now < 3 * 3600:  # until it holds some pages, not all (a page crosses a hop in about a second)
            w.run(w.now + 0.2)
            d = relay.mesh.ota.store.updater.download
            if d.manifest is not None and d.table is not None and 0 < len(d.missing_pages()) < d.manifest.pages - 1:
                break
        assert w.now < 3 * 3600
        before = relay.mesh.ota.store.updater.download.missing_pages()
        w.kill(relay)  # a brown-out: the module is back within seconds
        w.run(w.now + 5)
        w.start_node(relay)
        f.attach(relay)
        assert relay.mesh.ota.store.updater.download.missing_pages() == before  # nothing was lost, nothing redone
        f.run_until_done(3 * 3600)
        assert all(on_new_image(f, n) for n in f.world.nodes[1:])
    finally:
        f.close()


def test_a_module_that_missed_the_activate_switches_once_its_parent_runs_the_update():
    f = fleet()
    try:
        deaf = by_addr(f, 4)
        parent = deaf.mesh.routing.preferred.addr
        ota = deaf.mesh.ota
        heard = ota._from_parent

        def missing_activate(payload, now):
            """Every ACTIVATE is lost until its parent has switched (a fade, a busy channel)."""
            if payload[0] == transfer.ACTIVATE_MSG and parent not in f.rebooted:
                return
            heard(payload, now)
        ota._from_parent = missing_activate
        f.start()
        f.run_until_done(3 * 3600)  # without the word from its parent it waited SELF_ACTIVATE_MS, 12 hours
        assert f.rebooted[deaf.addr] > f.rebooted[parent]
        assert all(on_new_image(f, n) for n in f.world.nodes[1:])
    finally:
        f.close()


def test_a_module_that_hears_of_the_update_only_from_another_neighbour_still_takes_it():
    f = fleet()
    try:
        moved = by_addr(f, 4).mesh.ota
        take = moved._take

        def as_if_another_parent(payload, now, from_parent, sender, requester):
            """It moved to a parent that no longer announces: the news comes from other neighbours only."""
            if payload[0] == transfer.ANNOUNCE_MSG:
                from_parent = False
            take(payload, now, from_parent, sender, requester)
        moved._take = as_if_another_parent
        f.start()
        f.run_until_done(3 * 3600)
        assert all(on_new_image(f, n) for n in f.world.nodes[1:])
    finally:
        f.close()


def test_a_module_on_a_weak_battery_refuses_and_stays_on_its_image():
    f = fleet()
    try:
        f.battery[6] = 3200  # below the manifest's 3300 mV floor
        f.start()
        f.run_until_done(3 * 3600)
        assert f.refused() == [6] and "battery" in by_addr(f, 6).mesh.ota.store.refused
        assert Slots(by_addr(f, 6).hal.flash_path()).load().seq == 0
        assert all(on_new_image(f, by_addr(f, a)) for a in range(1, 6))
    finally:
        f.close()


def test_an_update_for_one_module_is_carried_by_the_relays_which_keep_their_image():
    f = fleet()
    try:
        f.start(targets=(5,))
        f.run_until_done(3 * 3600)
        assert on_new_image(f, by_addr(f, 5))
        f.world.run(f.world.now + CHILD_LOST_MS / 1000 + 60)  # relays that missed its DONE wait this long
        for addr in (1, 2, 3, 4, 6):
            node = by_addr(f, addr)
            assert Slots(node.hal.flash_path()).load().seq == 0
            assert node.mesh.ota.store.updater.download.manifest is None  # a carried copy is dropped
    finally:
        f.close()


def test_a_module_that_cannot_rejoin_after_the_switch_goes_back_to_its_previous_image():
    # The board's self-test (firmware/d100fc/board.py): a trial image that has not rejoined within
    # SELF_TEST_S resets the board; after MAX_TRIAL_BOOTS such starts the previous image runs again.
    f = fleet()
    try:
        w, last = f.world, f.world.nodes[-1]
        f.start()
        while last.addr not in f.rebooted and w.now < 3 * 3600:
            w.run(w.now + 30)
        del w.nodes[0].mesh.module_keys[last.addr]  # the concentrator forgot it: its joins are never answered
        w.run(w.now + (MAX_TRIAL_BOOTS + 2) * SELF_TEST_S)
        assert f.self_test_resets == MAX_TRIAL_BOOTS and last.addr in f.rolled_back  # trial boots 1..3, then back
        state = Slots(last.hal.flash_path()).load()
        assert state.seq == 0 and not state.trial
        with open(last.hal.flash_path() + "/registers.bin", "rb") as kept:
            assert kept.read() == KEEP
        assert f.figures()["fleet_update_s"] is None and f.figures()["rolled_back"] == 1
    finally:
        f.close()
