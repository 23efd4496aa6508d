"""firmware/d100fc/board.py, the board's entry point, on a node of the simulated mesh: config.json and
keys in, the real Module and mesh running; a trial image confirms itself only after its self-test
(registers readable, network joined), and one that fails it goes back to the previous image with the
registers untouched. (The real board's HAL, the CC1101 over SPI, is tests/mpy/test_boardhal.py's.)"""

import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np

from firmware.common.mesh.mac import (BROADCAST_CHANNEL, SAMPLE_LEAD_MS, SUPERFRAME_MS, slot_wait, unicast_channel,
                                      unicast_wait)
from firmware.common.ota import archive
from firmware.common.ota.slots import MAX_TRIAL_BOOTS, Slots, State, make_dirs, remove_tree, write_atomic
from firmware.common.records import RecordStore
from firmware.d100fc import board as board_module
from firmware.d100fc.board import SELF_TEST_S, Board
from protocol import messages
from simulator import scenarios
from simulator.world import NET_ID, World

sys.path.insert(0, str(Path(__file__).parent / "mpy"))
ota_world = importlib.import_module("ota_world")
CHANNELS = [{"resource": "electricity", "pulse_const": 1000, "initial": 12345000}]


class Field:
    """A 3-module chain whose last module runs board.Board on a provisioned flash."""

    def __init__(self, trial=True):
        _, loss = scenarios.chain(3, rng=np.random.default_rng(4))
        self.world = w = World(loss, seed=4, days=2)
        self.reports = []
        for node in w.nodes[:-1]:
            w.start_node(node)
        w.nodes[0].mesh.on_uplink = lambda src, payload, backfill=False: self.reports.append((src, payload))
        self.node = node = w.nodes[-1]
        flash = node.hal.flash_path()
        ota_world.provision(flash, ota_world.image(1), 1)  # image 1 and the application's files (registers...)
        for name, data in (("keys/network.key", w.net_key), ("keys/module.key", w.module_key(node.addr)),
                           ("keys/vendor.pub", ota_world.VENDOR_KEY),
                           ("config.json", json.dumps({"addr": node.addr, "net_id": NET_ID,
                                                       "channels": CHANNELS}).encode())):
            make_dirs((flash + "/" + name).rsplit("/", 1)[0])
            write_atomic(flash + "/" + name, data)
        self.slots = Slots(flash)
        self.board = None
        self.boots = 0
        self.resets = 0
        if trial:  # image 2 arrived over the air and is the trial image
            write_atomic(self.slots.root + "/img", ota_world.image(2))
            make_dirs(self.slots.slot_dir(1))
            archive.unpack(self.slots.root + "/img", self.slots.slot_dir(1),
                           hashlib.sha256(ota_world.image(2)).digest())
            remove_tree(self.slots.root + "/img")
            self.slots.switch(1, 2)

    def power_on(self):
        """main.py: the first stage picks the slot (counting a trial boot), then the board starts."""
        w, node = self.world, self.node
        self.slots.boot()
        self.boots += 1
        self.board = b = Board(node.hal)
        node.alive, node.hal.rx, node.app_due = True, [], None
        node.mesh = b.node
        b.start()
        node.app = None if b.reset else b.module
        w.reschedule(node)
        w.at(w.now + 10, self._loop, b)

    def _loop(self, world, b):
        """The board's main loop, every 10 s; a reset powers it on again (main.py's machine.reset())."""
        if b is not self.board:
            return
        if b.step() is None:
            self.resets += 1
            world.kill(self.node)
            world.at(world.now + 5, lambda w, _: self.power_on(), None)
            return
        world.at(world.now + 10, self._loop, b)

    def registers(self):
        return RecordStore(self.node.hal.flash_path(), "state").load()


def test_a_trial_image_confirms_after_its_self_test_and_keeps_the_registers():
    f = Field()
    f.power_on()
    f.world.run(3600)
    state = f.slots.load()
    assert f.resets == 0 and state.active == 1 and state.seq == 2 and not state.trial
    assert f.board.module.register(0, 0) == 12345000  # the configured start, restored by the new image
    flash = f.node.hal.flash_path()
    assert all(open(flash + "/" + name, "rb").read() == data for name, data in ota_world.KEEP.items()
               if name != "keys/module.key")
    f.world.run(f.world.now + 3600)
    reports = [messages.decode(p) for s, p in f.reports if s == f.node.addr and p[0] == messages.OtaStatus.TYPE]
    assert messages.OtaStatus(2, messages.OTA_INSTALLED, 0) in reports


def test_a_trial_image_that_cannot_read_the_registers_leaves_them_alone_and_the_previous_image_returns():
    f = Field()
    f.slots.save(State(0, 0, 0, 1))  # on image 1 first: it runs and checkpoints its registers
    f.power_on()
    f.world.run(600)
    f.world.kill(f.node)
    f.slots.switch(1, 2)
    store = RecordStore(f.node.hal.flash_path(), "state")
    saved = store.load()
    store.save(bytes([saved[0] + 1]) + saved[1:])  # a record format image 2 does not read

    def records():
        return [open(f.node.hal.flash_path() + "/state." + n, "rb").read() for n in "ab"]
    before = records()
    for _ in range(MAX_TRIAL_BOOTS):
        f.power_on()
        assert f.board.trial and f.board.reset and f.board.step() is None  # it stops before the Module boots
        assert records() == before
        f.world.kill(f.node)
    assert f.slots.boot().endswith("slot0")  # the next start: image 1 again, image 2 refused from now on
    state = f.slots.load()
    assert state.active == 0 and state.seq == 1 and not state.trial and state.failed_seq == 2
    assert records() == before


def test_a_trial_image_that_never_joins_gives_up_and_the_previous_image_returns():
    f = Field()
    f.world.kill(f.world.nodes[0])  # the concentrator is down: nobody answers a join
    f.power_on()
    f.world.run((MAX_TRIAL_BOOTS + 1) * (SELF_TEST_S + 60))
    state = f.slots.load()
    assert f.resets == MAX_TRIAL_BOOTS and state.active == 0 and state.seq == 1 and state.failed_seq == 2
    assert f.board.module.register(0, 0) == 12345000 and not f.board.reset  # image 1 runs on


def test_a_provisioned_board_runs_its_application_without_a_trial():
    f = Field(trial=False)
    f.power_on()
    f.world.run(2 * 3600)  # the first hour's report leaves within 10 minutes of its end
    assert f.resets == 0 and f.board.node.joined and f.slots.load().seq == 1
    assert any(s == f.node.addr and p[0] == messages.Hourly.TYPE for s, p in f.reports)


def test_the_listen_plan_follows_the_mac_once_the_board_has_a_parent():
    f = Field(trial=False)
    f.power_on()
    mesh = f.board.node
    # no parent yet: the receiver stays on, on the channel beacons come on
    assert board_module.listen_plan(mesh) == (0, (), 0, BROADCAST_CHANNEL)
    f.world.run(600)
    period, phases, offset, _ = board_module.listen_plan(mesh)
    assert mesh.routing.preferred is not None and period == SUPERFRAME_MS and offset == mesh.cycle.offset(mesh.hal.ticks_ms())
    now = f.node.hal.ticks_ms()
    net_phase = mesh.net_phase(now)
    # BoardHAL.idle samples where a sender aims, SAMPLE_LEAD_MS after its frame starts: at the unicast
    # phase and in the depth's slot.
    waits = sorted(((p - SAMPLE_LEAD_MS - net_phase) % period, ch) for p, ch in phases)
    assert waits == sorted(((unicast_wait(mesh.addr, net_phase), unicast_channel(mesh.addr)),
                            (slot_wait(mesh.routing.depth, net_phase), BROADCAST_CHANNEL)))
