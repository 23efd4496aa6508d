"""One signed update over the mesh simulator, in real T_OTA frames, with the real firmware on every node.

Everything on the radio side is real: the simulator's channel (path loss,
shadowing, collisions, outside interference), every node's mesh station with
its MAC timing and duty-cycle meter, and the update's own protocol
(ota/meshota.py over ota/transfer.py and ota/updater.py, each module on its
own flash directory). The concentrator's edge agent is stood in for by a
transfer.Source fed straight into the root (the serial link is no bottleneck),
which sends ACTIVATE as the agent does, once every target reported that it
holds the image.

What is modelled: the time a module needs, once it switches, to verify and
unpack the image, reboot and start (ACTIVATE_S; the hashing and unpacking
themselves run for real), and the MCU's energy for that (ACTIVATE_CPU_S).
After the reboot a module rejoins the mesh for real and confirms its trial
image once joined (the board's self-test: registers readable, network joined).
The nodes run the mesh and the update only (no meters): pulses would cost wall
time and change nothing on the air but the hourly reports.
"""

import tempfile
import time

import numpy as np

from firmware.common.ota import manifest, transfer
from firmware.common.ota.meshota import MeshOta
from firmware.common.ota.slots import Slots, State
from firmware.common.ota.updater import Updater
from firmware.d100fc.board import SELF_TEST_S
from protocol import messages
from protocol.frame import T_OTA
from simulator import energy, scenarios
from simulator.world import World
from tools.flash import bundle

RESET_S = 2.0  # a board reset: boot loader, interpreter, imports
ACTIVATE_S = 30.0  # verify and unpack on a 80-240 MHz MCU (~10 s, see ACTIVATE_CPU_S), reboot, start
ACTIVATE_CPU_S = 10.0  # Ed25519 done at the offer; hashing and unpacking 64 kB from flash, ~100x the x86 port
MAINS_MV = 0xFFFF  # the concentrator is mains powered: no battery floor
STEP_S = 30.0


class FleetRun:
    """A world whose nodes carry an update: ``start(targets)``, then ``run_until_done(limit_s)``."""

    def __init__(self, scenario="chain", modules=240, seed=1, image=None, seq=1, interference=0.05, concentrator=None,
                 key=None):
        """``concentrator(root node)``: the root's application, a J100UC Collector whose agent link carries the
        update (the caller wires the agent to ``world.on_link``); None: a Source stands in for the agent.
        ``key``: the vendor's signing key the modules trust (default: a new one)."""
        _, loss = scenarios.SCENARIOS[scenario](modules, rng=np.random.default_rng(seed))
        self._tmp = tempfile.TemporaryDirectory(prefix="balans-ota-")
        self.world = w = World(loss, seed=seed, days=1.0, interference=interference, flash_dir=self._tmp.name)
        key = key or bundle.new_key()
        self.vendor_key = bundle.public_bytes(key)
        b = bundle.make(image, seq, "d100fc", key)
        b.verify(self.vendor_key)  # what the agent and the concentrator check first
        self.bundle = b
        self.source = transfer.Source(b.envelope, b.table, b.image, b.manifest)
        self.reports = []  # (world time, addr, OtaStatus)
        self.installed = {}  # addr -> world time it confirmed the new image
        self.rebooted = {}  # addr -> world time it installed and rebooted
        self.battery = {}  # addr -> mV, for modules with a weak cell
        self._trial = {}  # node on a trial image -> world time it started
        self.wall_s = 0.0  # of run_until_done
        self.self_test_resets = 0  # trial boots that had not rejoined within the board's SELF_TEST_S
        self.rolled_back = {}  # addr -> world time it went back to its previous image
        self._stand_in = concentrator is None  # the stand-in agent, not a real one, activates the update
        self.activated_at = None  # world time the agent sent ACTIVATE
        self.started_at = None
        self.targets = ()
        for node in w.nodes:
            if not node.is_root:
                Slots(node.hal.flash_path()).save(State(0, 0, 0, 0))  # provisioned with a seq-0 image
            w.start_node(node, concentrator if node.is_root else None)
            self.attach(node)

    # ---- the firmware of each node ----------------------------------------------

    def attach(self, node):
        """Give a (re)started node its update firmware over what its flash holds."""
        hal, mesh = node.hal, node.mesh
        if node.is_root:
            updater = Updater(hal.flash_path(), self.vendor_key, manifest.CLASS_D100FC)
            store = transfer.Receiver(updater, lambda: MAINS_MV)
            collector = node.app
            if collector is None:
                mesh.ota = MeshOta(mesh, store, upstream=lambda payload: self._agent(node, payload))
                mesh.on_uplink = self._uplink
                return
            mesh.ota = MeshOta(mesh, store, upstream=collector.ota_upstream)
            collector.on_ota = lambda payload: mesh.ota.from_upstream(payload, hal.ticks_ms())

            def on_uplink(src, payload, backfill=False):
                self._uplink(src, payload)
                collector.on_uplink(src, payload, backfill)
            mesh.on_uplink = on_uplink
            return
        updater = Updater(hal.flash_path(), self.vendor_key, manifest.CLASS_D100FC)
        store = transfer.Receiver(updater, lambda: self.battery.get(node.addr, hal.battery_mv()))
        mesh.ota = MeshOta(mesh, store, on_install=lambda: self._reboot(node))

    def _agent(self, root, payload):
        """The edge agent's answer to the concentrator's NEED: the fragments of that unit."""
        now = root.hal.ticks_ms()
        for fragment in self.source.answer(payload):
            root.mesh.ota.from_upstream(fragment, now)

    def _uplink(self, src, payload, backfill=False):
        if payload[:1] == bytes((messages.OtaStatus.TYPE,)):
            self.reports.append((self.world.now, src, messages.OtaStatus.decode(payload)))
            if self._stand_in and self.activated_at is None:
                self._activate_when_all_hold_it()

    def _activate_when_all_hold_it(self):
        """The agent's rule (edge_agent/updates.py): ACTIVATE once every target holds the image or refused it."""
        holding = {a for _, a, r in self.reports if r.state != messages.OTA_LOADING}
        if all(a in holding for a in self.targets):
            root = self.world.nodes[0]
            self.activated_at = self.world.now
            root.mesh.ota.from_upstream(transfer.activate(self.source.session, transfer.ACTIVATE_S),
                                        root.hal.ticks_ms())

    def _reboot(self, node):
        w = self.world
        self.rebooted[node.addr] = w.now
        w.kill(node)
        w.at(w.now + ACTIVATE_S, self._boot, node)

    def _boot(self, world, node):
        slots = Slots(node.hal.flash_path())
        slots.boot()  # counts the trial boot, as main.py does before the application
        world.start_node(node)
        self.attach(node)
        if slots.load().trial:
            self._trial[node] = world.now
        else:  # too many trial boots without rejoining: back on the previous image
            self.rolled_back[node.addr] = world.now

    def _watch(self, world, _):
        """The board's self-test after a trial boot (firmware/d100fc/board.py): network joined within
        SELF_TEST_S, else the board resets into another trial boot (registers are not simulated here)."""
        for node, started in list(self._trial.items()):
            if not node.mesh.joined and world.now - started > SELF_TEST_S:
                del self._trial[node]
                self.self_test_resets += 1
                world.kill(node)
                world.at(world.now + RESET_S, self._boot, node)
            elif node.mesh.joined:
                del self._trial[node]
                slots = Slots(node.hal.flash_path())
                if slots.confirm():
                    self.installed[node.addr] = world.now
                    node.mesh.ota.report(slots.load().seq & 0xFFFF, messages.OTA_INSTALLED)
                    world.run_node(node)
        world.at(world.now + STEP_S, self._watch, None)

    # ---- running ----------------------------------------------------------------

    def join(self, limit_s=3600.0):
        """Run until every module has joined; the world time it took."""
        w = self.world
        while w.now < limit_s and not all(n.mesh.joined for n in w.nodes[1:]):
            w.run(w.now + STEP_S)
        return w.now

    def start(self, targets=(), announce=True):
        """The update starts for ``targets`` (module addresses) or all: announced to the concentrator by the
        stand-in agent, or (``announce`` False) by the real agent the caller has given it to."""
        w = self.world
        self.targets = tuple(targets) or tuple(n.addr for n in w.nodes[1:])
        self.started_at = w.now
        self._base = {n.addr: (n.meter.tx_s, n.meter.tx_mas + n.meter.rx_mas + n.meter.mcu_mas) for n in w.nodes}
        self._ota_frames = w.frames_by_kind.get(T_OTA, 0)
        w.at(w.now + STEP_S, self._watch, None)
        if announce:
            root = w.nodes[0]
            root.mesh.ota.from_upstream(transfer.announce(self.source.session, tuple(targets)), root.hal.ticks_ms())
            w.run_node(root)

    def refused(self):
        """Targets that will not take the update (signature, class, seq or battery), as they know it."""
        return sorted(a for a in self.targets if self.world.by_addr[a].mesh.ota.store.refused is not None)

    def settled(self):
        """Every target confirmed the new image or refused it."""
        refused = self.refused()
        return all(a in self.installed or a in refused for a in self.targets)

    def run_until_done(self, limit_s):
        w = self.world
        t0 = time.perf_counter()
        while w.now - self.started_at < limit_s and not self.settled():
            w.run(w.now + STEP_S)
        self.wall_s = time.perf_counter() - t0

    def figures(self):
        w = self.world
        modules = [n for n in w.nodes[1:] if n.addr in self.targets]
        air, mah = [], []
        for n in modules:
            tx0, mas0 = self._base[n.addr]
            air.append(n.meter.tx_s - tx0)
            spent = n.meter.tx_mas + n.meter.rx_mas + n.meter.mcu_mas - mas0
            if n.addr in self.rebooted:
                spent += ACTIVATE_CPU_S * energy.MCU_ACTIVE_MA
            mah.append(spent / 3600.0)
        done = [self.installed[a] - self.started_at for a in self.targets if a in self.installed]
        capacity = energy.CELL_MAH * energy.USABLE
        return {
            "modules": len(w.nodes) - 1, "targets": len(self.targets),
            "depth": max(n.mesh.routing.depth for n in w.nodes[1:]),
            "image_bytes": self.bundle.manifest.size, "pages": self.bundle.manifest.pages,
            "installed": len(self.installed),
            "refused": self.refused(),
            "fleet_update_s": round(max(done), 1) if len(done) == len(self.targets) else None,
            "first_installed_s": round(min(done), 1) if done else None,
            "activated_s": round(self.activated_at - self.started_at, 1) if self.activated_at else None,
            "airtime_s_mean": round(sum(air) / len(air), 2), "airtime_s_max": round(max(air), 2),
            "energy_mah_mean": round(sum(mah) / len(mah), 3), "energy_mah_max": round(max(mah), 3),
            "battery_share": round(max(mah) / capacity, 6),
            "duty_cycle_max": round(max(_busiest_hour(n) for n in w.nodes[1:]) / 3600.0, 4),
            "ota_frames": w.frames_by_kind.get(T_OTA, 0) - self._ota_frames,
            "self_test_resets": self.self_test_resets, "rolled_back": len(self.rolled_back),
            "pages_rejected": sum(n.mesh.ota.store.rejected for n in w.nodes if n.mesh.ota is not None),
            "wall_s": round(self.wall_s, 1),
        }

    def close(self):
        self.world.close()
        self._tmp.cleanup()


def _busiest_hour(node):
    """The most seconds a node transmitted in any 60 consecutive minutes."""
    if not node.minute_tx:
        return 0.0
    first, last = min(node.minute_tx), max(node.minute_tx)
    per = [node.minute_tx.get(m, 0.0) for m in range(first, last + 1)]
    best = window = sum(per[:60])
    for i in range(60, len(per)):
        window += per[i] - per[i - 60]
        best = max(best, window)
    return best


def run(scenario="chain", modules=240, seed=1, image=None, targets=(), limit_s=4 * 3600.0):
    """The figures of one fleet update (``balans bench ota``)."""
    fleet = FleetRun(scenario, modules, seed, image)
    try:
        join_s = fleet.join()
        fleet.start(targets)
        fleet.run_until_done(limit_s)
        figures = fleet.figures()
        figures.update({"scenario": scenario, "join_s": round(join_s, 1)})
        return figures
    finally:
        fleet.close()
