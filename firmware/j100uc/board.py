"""The J100UC board's application: the concentrator's radio side, what its main.py runs.

    config.json and keys/  ->  the HAL  ->  MeshRoot, Collector and the update relay  ->  the main loop

Files on the board's flash: config.json (``net_id``; ``modules``, each module's address in
hex and its channels' resources, which seed the module table at the first boot; optional
``pins``), keys/network.key, keys/vendor.pub, and the module table with one AES key per module
(firmware/j100uc/roster.py), which the edge agent keeps up to date as installers provision
modules (``balans agent modules add``).

The concentrator is mains powered: its receiver never sleeps (``hal.idle`` without a sample
plan) and the Collector ticks every second, which pumps the serial link to the agent.
"""

import json

from firmware.common.mesh.root import MeshRoot
from firmware.common.ota import transfer
from firmware.common.ota.manifest import CLASS_D100FC
from firmware.common.ota.meshota import MeshOta
from firmware.common.ota.slots import read_file
from firmware.common.ota.updater import Updater
from firmware.j100uc.collector import Collector
from firmware.j100uc.roster import Roster
from protocol.compat import const

TICK_MS = const(1000)  # the agent link's credit and acknowledgements flow at this pace
MAINS_MV = const(3600)  # what the update store is told the battery holds: mains never runs low


class Board:
    def __init__(self, hal):
        self.hal = hal
        root = hal.flash_path()
        with open(root + "/config.json") as f:
            config = json.load(f)
        roster = Roster(root, config.get("modules"))
        self.mesh = MeshRoot(hal, config["net_id"], read_file(root + "/keys/network.key"), roster)
        self.collector = collector = Collector(hal, config, self.mesh.downlink, roster)
        self.mesh.on_uplink = collector.on_uplink
        # The root holds the update it relays as a module would, checked against the vendor key.
        updater = Updater(root, read_file(root + "/keys/vendor.pub"), CLASS_D100FC)
        self.mesh.ota = ota = MeshOta(self.mesh, transfer.Receiver(updater, lambda: MAINS_MV),
                                      upstream=collector.ota_upstream)
        collector.on_ota = lambda payload: ota.from_upstream(payload, hal.ticks_ms())
        self._due = hal.unix_time()

    def step(self):
        """One pass of the main loop; returns the milliseconds until the next."""
        hal = self.hal
        hal.watchdog_feed()
        if hal.unix_time() >= self._due:
            self.collector.tick()
            self._due = self.collector.next_wakeup()
        self.mesh.poll()
        mesh = self.mesh.wakeup_in_ms()
        return max(0, min(TICK_MS, (self._due - hal.unix_time()) * 1000, TICK_MS if mesh is None else mesh))


def main(hal=None):
    """The board's entry point: runs until the board is reset."""
    if hal is None:
        from firmware.common.boardhal import BoardHAL

        with open("/flash/config.json") as f:
            pins = json.load(f).get("pins")
        hal = BoardHAL.open(pins)
    hal.radio_listen()
    board = Board(hal)
    while True:
        hal.idle(board.step(), channel=board.mesh.listen_channel())
