"""firmware/j100uc/board.py, the concentrator's entry point, as the root of a simulated mesh: config.json
and keys in, the real MeshRoot and Collector running from its main loop; the modules' hourly reports
reach the collector and the serial link to the agent carries its frames."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware.common.ota.slots import make_dirs, write_atomic
from firmware.d100fc.module import Module
from firmware.j100uc.board import TICK_MS, Board
from protocol import link
from simulator import scenarios
from simulator.network import CHANNELS
from simulator.world import NET_ID, World

sys.path.insert(0, str(Path(__file__).parent / "mpy"))
ota_world = importlib.import_module("ota_world")


def provision(world, skip=()):
    """Write the concentrator's files for the world's modules (less those in ``skip``)."""
    root = world.nodes[0]
    flash = root.hal.flash_path()
    modules = [n for n in world.nodes[1:]]
    files = [("keys/network.key", world.net_key), ("keys/vendor.pub", ota_world.VENDOR_KEY),
             ("config.json", json.dumps({"net_id": NET_ID, "modules": {
                 "%04x" % n.addr: [c["resource"] for c in CHANNELS] for n in modules}}).encode())]
    files += [("keys/modules/%04x.key" % n.addr, world.module_key(n.addr)) for n in modules if n.addr not in skip]
    for name, data in files:
        make_dirs((flash + "/" + name).rsplit("/", 1)[0])
        write_atomic(flash + "/" + name, data)


def start_module(node):
    app = Module(node.hal, {"addr": node.addr, "channels": [dict(c) for c in CHANNELS]}, node.mesh.uplink)
    node.mesh.on_downlink = app.on_downlink
    node.mesh.on_broadcast = app.on_broadcast
    app.boot()
    return app


def test_the_concentrator_board_collects_its_modules_hours_and_talks_to_the_agent_link():
    _, loss = scenarios.chain(3, rng=np.random.default_rng(5))
    w = World(loss, seed=5, days=1)
    serial = []
    w.on_link = serial.append
    provision(w)
    root = w.nodes[0]
    board = Board(root.hal)
    root.alive, root.mesh = True, board.mesh
    waits = []

    def loop(world, _):
        waits.append(board.step())
        world.at(world.now + waits[-1] / 1000, loop, None)
    w.at(0, loop, None)
    for node in w.nodes[1:]:
        w.give_meters(node)
        w.start_node(node, start_module)
    w.run(3 * 3600)
    hours = {a: m.last_hour for a, m in board.collector.modules.items()}
    assert len(hours) == len(w.nodes) - 1 and all(h is not None for h in hours.values()), hours
    # The loop never spins: a step may ask for the next at once (a downward frame the busy channel refused is back
    # in the mesh's queue, to be aimed at its hop's next sample), never twice in a row, and never sleeps past a tick.
    assert all(a or b for a, b in zip(waits, waits[1:])) and max(waits) <= TICK_MS
    reader = link.Reader()
    frames = [link.unpack(body)[0] for body in reader.feed(b"".join(serial))]
    assert frames and link.L_HELLO in frames and reader.bad_frames == 0


def test_a_module_without_its_key_is_refused_by_name():
    _, loss = scenarios.chain(3, rng=np.random.default_rng(5))
    w = World(loss, seed=5, days=1)
    provision(w, skip={w.nodes[2].addr})
    with pytest.raises(ValueError, match="no key for module %04x" % w.nodes[2].addr):
        Board(w.nodes[0].hal)
