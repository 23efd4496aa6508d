"""The D100FC board's application: what main.py runs once otaboot has chosen the slot (docs/ota.md, "Boot").

    config.json and keys/  ->  the HAL  ->  MeshNode, Module and the update's MeshOta  ->  the main loop

Files on the board's flash (written by ``balans flash``, tools/flash/provision.py): config.json
(addr, channels, net_id), keys/module.key, keys/network.key, keys/vendor.pub.

An image on trial (just installed over the air) keeps itself only after its self-test:
- registers readable: the checkpoint on flash is one this image reads, checked before the
  Module boots (a Module that cannot read it would start afresh and checkpoint over it);
- network joined: the mesh's join answer came back from the concentrator.
Then it calls Updater.confirm() and reports OTA_INSTALLED. A trial that fails either check,
or has not joined within SELF_TEST_S, stops (main.py resets the board); each such start
counts a failed trial boot, and after three the previous image runs again (ota/slots.py).

``Board`` holds the logic and is driven by a host: ``main()`` on a board, over
firmware/common/boardhal.py (pins, the CC1101 over SPI, its LittleFS), which sleeps between
the MAC's samples (``listen_plan``); the tests in the simulator.
"""

import json

from firmware.common.mesh.clock import ticks_diff
from firmware.common.mesh.mac import SUPERFRAME_MS
from firmware.common.mesh.node import MeshNode
from firmware.common.ota import transfer
from firmware.common.ota.manifest import CLASS_D100FC
from firmware.common.ota.meshota import MeshOta
from firmware.common.ota.slots import read_file
from firmware.common.ota.updater import Updater
from firmware.d100fc.module import Module
from protocol import messages
from protocol.compat import const

# A trial image that has not rejoined in this long resets the board (three such starts: back to the
# previous image). Three hours, not one: after an update's reboot wave a module 30 hops deep waits for
# every router above it to rejoin first, and an hour made 371 resets and 50 rollbacks of a good image
# in the 240-module chain, each reset taking its subtree down again (balans bench ota). Nothing is lost
# while a module is off the air (the 45-day archive is backfilled); a bad image is back out in 9 hours.
SELF_TEST_S = const(10800)
IDLE_MS = const(60000)  # the loop wakes at least this often (the watchdog, the self-test)


class Board:
    def __init__(self, hal):
        self.hal = hal
        root = hal.flash_path()
        config = _config(root)
        self.node = MeshNode(hal, config["addr"], config["net_id"], read_file(root + "/keys/network.key"),
                             read_file(root + "/keys/module.key"), seed=config["addr"])
        self.module = Module(hal, config, self.node.uplink)
        self.node.on_downlink = self.module.on_downlink
        self.node.on_broadcast = self.module.on_broadcast
        self.updater = Updater(root, read_file(root + "/keys/vendor.pub"), CLASS_D100FC)
        self.node.ota = MeshOta(self.node, transfer.Receiver(self.updater, hal.battery_mv),
                                on_install=self._installed)
        state = self.updater.slots.load()
        self.trial = bool(state.trial)
        self.seq = state.seq
        self.reset = False  # main() returns and main.py resets the board: into a new image, or a failed trial
        self._started = hal.ticks_ms()

    def start(self):
        """Boot the application, unless a trial image cannot read the registers it would take over."""
        if self.trial and not self.module.records_readable():
            self.reset = True
            return
        self.module.boot()

    def step(self):
        """One pass of the main loop; returns the milliseconds until the next, or None to reset the board."""
        hal = self.hal
        hal.watchdog_feed()
        if not self.reset:
            if hal.unix_time() >= self.module.next_wakeup():
                self.module.tick()
            self.node.poll()
            self.self_test()
        if self.reset:
            return None
        wait = (self.module.next_wakeup() - hal.unix_time()) * 1000
        mesh = self.node.wakeup_in_ms()
        return max(0, min(IDLE_MS, wait, IDLE_MS if mesh is None else mesh))

    def self_test(self):
        """On trial: confirm once the network joined, give up after SELF_TEST_S (the registers were checked at start)."""
        if not self.trial or self.reset:
            return
        if self.node.joined:
            self.updater.confirm()
            self.trial = False
            self.node.ota.report(self.seq & 0xFFFF, messages.OTA_INSTALLED)
        elif ticks_diff(self.hal.ticks_ms(), self._started) > SELF_TEST_S * 1000:
            self.reset = True

    def _installed(self):
        self.reset = True  # an update became the trial image: restart into it


def main(hal=None):
    """The board's entry point; returns when the board must reset (main.py resets it)."""
    if hal is None:
        from firmware.common.boardhal import BoardHAL

        hal = BoardHAL.open(_config("/flash").get("pins"))
    board = Board(hal)
    board.start()
    while True:
        wait = board.step()
        if wait is None:
            return
        hal.idle(wait, *listen_plan(board.node))


def listen_plan(node):
    """When and where the receiver must sample, as BoardHAL.idle takes it: (period, phases, offset, channel).

    The MAC's samples per superframe (Station.sample_phases); no phases while the node
    has no parent: it listens all the time, on Station.listen_channel, until one is found.
    """
    phases = node.sample_phases()
    if not phases:
        return 0, (), 0, node.listen_channel()
    return SUPERFRAME_MS, phases, node.cycle.offset(node.hal.ticks_ms()), 0


def _config(root):
    with open(root + "/config.json") as f:
        return json.load(f)
