"""A simulated district with the real firmware: D100FC modules, the J100UC collector, the mesh.

``simulate`` runs a scenario and returns the figures of ``balans simulate``;
``run_district`` is the small end-to-end entry point (docs/mesh.md): the
collector's agent-link bytes go to a callback and the meters' true pulses come
back, so a demo can check that every reading was stored exactly once.
"""

import time

import numpy as np

from firmware.d100fc.module import Module
from firmware.j100uc.collector import Collector
from protocol import messages
from simulator import scenarios
from simulator.faults import Fault
from simulator.metrics import Recorder
from simulator.world import NET_ID, World

CHANNELS = (  # what every module counts: electricity 1000 imp/kWh, water 10 L a pulse
    {"resource": "electricity", "pulse_const": 1000},
    {"resource": "water", "pulse_const": 100},
    {"resource": "water", "pulse_const": 100},
)
MODULE_SLEEP_S = 900  # modules wake at least every 15 minutes (and at every hour) to poll sensors
BROADCAST_HOURS = (6.5, 11.5, 17.5, 21.5)  # ripple-control commands a day, as a utility would send
COLLECTOR_TICK_S = 5.0


class _CountingUplink:
    """The mesh's uplink as the module sees it, noting each report for the metrics."""

    def __init__(self, node, recorder):
        self._uplink = node.mesh.uplink
        self._addr = node.addr
        self._recorder = recorder

    def send(self, payload, urgent=False, backfill=False):
        ok = self._uplink.send(payload, urgent, backfill)
        if ok:
            self._recorder.made_report(self._addr, payload, backfill)
        return ok

    def stats(self):
        return self._uplink.stats()


class District:
    """A World wired with real firmware on every node, and a Recorder watching it."""

    def __init__(self, scenario="block", nodes=240, days=1.0, seed=1, sigma_db=6.0, interference=0.05,
                 on_link_bytes=None, fault=None):
        build = scenarios.SCENARIOS[scenario]
        pos, loss = build(nodes, rng=np.random.default_rng(seed))
        self.world = w = World(loss, seed=seed, days=days, sigma_db=sigma_db, interference=interference)
        w.scenario = scenario
        self.positions = pos
        self.recorder = Recorder(w)
        self.on_link_bytes = on_link_bytes
        self.send_ripple = None  # callable(payload) that sends ripple control instead of the root itself
        w.on_link = self._link
        for node in w.nodes:
            if not node.is_root:
                w.give_meters(node)
            w.start_node(node, self._app)
        self.app_factory = self._app  # a restarted node boots the same firmware
        self.fault = None if fault is None else Fault(self, fault)
        for day in range(int(days) + 1):
            for h in BROADCAST_HOURS:
                t = day * 86400 + h * 3600
                if t < w.end:
                    w.at(t, self._ripple, day * 10 + BROADCAST_HOURS.index(h))

    def _app(self, node):
        w = self.world
        if node.is_root:
            modules = {n.addr: ["electricity", "water", "water"] for n in w.nodes if not n.is_root}
            app = Collector(node.hal, {"net_id": NET_ID, "modules": modules}, node.mesh.downlink)
            app.TICK_S = COLLECTOR_TICK_S
            node.mesh.on_uplink = self._uplink_to(app)
            return app
        config = {"addr": node.addr, "channels": [dict(c) for c in CHANNELS], "max_sleep_s": MODULE_SLEEP_S}
        app = Module(node.hal, config, _CountingUplink(node, self.recorder))
        node.mesh.on_downlink = app.on_downlink
        node.mesh.on_broadcast = self._broadcast_to(node.addr, app)
        app.boot()
        return app

    def _uplink_to(self, collector):
        recorder = self.recorder

        def on_uplink(src, payload, backfill=False):
            recorder.arrived(src, payload, backfill)
            collector.on_uplink(src, payload, backfill)
        return on_uplink

    def _broadcast_to(self, addr, module):
        recorder = self.recorder

        def on_broadcast(payload):
            recorder.broadcast_heard(addr, payload)
            module.on_broadcast(payload)
        return on_broadcast

    @staticmethod
    def _ripple(world, number):
        """A ripple-control command to every module: shed group 1 for 15 minutes."""
        root = world.nodes[0]
        payload = messages.GroupCmd(number & 0xFFFF, 1, 1, 900).encode()
        if world.district.send_ripple is not None:  # through the agent, tagged (balans demo)
            world.district.send_ripple(payload)
            return
        world.district.recorder.broadcast_sent(payload)
        root.mesh.downlink.broadcast(payload)
        world.run_node(root)

    def _link(self, data):
        if self.on_link_bytes is not None:
            answer = self.on_link_bytes(data)
            if answer:
                self.world.nodes[0].hal.link_in += bytes(answer)

    def run(self):
        self.world.district = self
        t0, c0 = time.perf_counter(), time.process_time()
        self.world.run()
        self.wall_s = time.perf_counter() - t0
        self.cpu_s = time.process_time() - c0  # wall time on a shared machine includes others' work
        return self

    def figures(self):
        figures = self.recorder.figures(round(self.wall_s, 2))
        figures["cpu_s"] = round(self.cpu_s, 2)
        if self.fault is not None:
            figures.update(self.fault.figures(self.recorder))
        return figures

    def truth(self):
        """Pulses every meter produced: {(module addr, channel, unix hour): count}."""
        return dict(self.recorder.truth)

    def close(self):
        self.world.close()


def simulate(scenario="block", nodes=240, days=1.0, seed=1, **options):
    """Run one scenario; return the figures of ``balans simulate --json``."""
    d = District(scenario, nodes, days, seed, **options).run()
    try:
        return d.figures()
    finally:
        d.close()


def run_district(nodes=12, days=1.0, seed=1, on_link_bytes=None, scenario="block"):
    """Run a small district end to end and return it (call ``.close()`` when done).

    ``on_link_bytes(data)`` receives every byte the collector writes to its
    agent link, in order, while simulated time runs; whatever it returns
    (bytes or None) is fed back to the collector as the agent's answer.
    ``district.world.now`` (+ ``world.epoch``) is the simulated time when it is
    called; ``district.truth()`` gives the pulses each meter really produced,
    ``district.figures()`` the metrics.
    """
    return District(scenario, nodes, days, seed, on_link_bytes=on_link_bytes).run()
