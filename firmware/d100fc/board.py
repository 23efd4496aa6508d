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

``Board`` holds the logic and is driven by a host: ``main()`` on a board, the tests in the
simulator. The real board's HAL (pins, the CC1101 over SPI, its LittleFS) is
firmware/d100fc/boardhal.py, which does not exist yet: ``main()`` says so.
"""

import json
import time

from firmware.common.mesh.clock import ticks_diff
from firmware.common.mesh.node import MeshNode
from firmware.common.ota import transfer
from firmware.common.ota.manifest import CLASS_D100FC
from firmware.common.ota.meshota import MeshOta
from firmware.common.ota.slots import read_file
from firmware.common.ota.updater import Updater
from firmware.d100fc.module import Module
from protocol import messages
from protocol.compat import const

SELF_TEST_S = const(3600)  # a module rejoins within the hour even deep in a network rebuilding after restarts
IDLE_MS = const(60000)  # the loop wakes at least this often (the watchdog, the self-test)


class Board:
    def __init__(self, hal):
        self.hal = hal
        root = hal.flash_path()
        with open(root + "/config.json") as f:
            config = json.load(f)
        self.node = MeshNode(hal, config["addr"], config["net_id"], read_file(root + "/keys/network.key"),
                             read_file(root + "/keys/module.key"), seed=config["addr"])
        self.module = Module(hal, config, self.node.uplink)
        self.node.on_downlink = self.module.on_downlink
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
        try:
            from firmware.d100fc.boardhal import BoardHAL
        except ImportError:
            raise RuntimeError("no board HAL: firmware/d100fc/boardhal.py (pins, CC1101 over SPI) is not written yet")
        hal = BoardHAL()
    board = Board(hal)
    board.start()
    while True:
        wait = board.step()
        if wait is None:
            return
        _sleep_ms(wait)


def _sleep_ms(ms):
    """Idle until the next step (a board HAL would rather lightsleep here, with the radio's WOR waking it)."""
    try:
        time.sleep_ms(ms)
    except AttributeError:  # CPython
        time.sleep(ms / 1000)
