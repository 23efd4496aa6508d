"""One update over a mesh-simulator scenario, with the real OTA firmware on every module.

What comes from the simulator (simulator/scenarios.py, simulator/radio.py):
the scenario's positions and path losses, the channel's shadowing, and the
reception ratio of a 64-byte frame at each link's mean SINR (NC-FSK, as the
simulator computes it), less the share of air outside interference takes.
Each module's parent is its best link one level nearer the concentrator, as
an ETX routing would choose.

What is real: every module runs ota/transfer.Receiver over ota/updater.Updater
on its own flash directory. It takes every fragment it hears, checks the
signature, table and pages, keeps its download, and installs, boots and
confirms at the end.

What is modelled (tools/flash/fleetmodel.py): the schedule of the transfer
on air. The mesh does not carry T_OTA frames yet, so the MAC, spatial reuse
and energy are the fleet model's.
"""

import tempfile

import numpy as np

from firmware.common.ota import manifest, transfer
from firmware.common.ota.slots import Slots, State
from firmware.common.ota.updater import Updater
from simulator import radio, scenarios
from tools.flash import build, bundle, fleetmodel

USABLE_PRR = 0.5  # links worse than this are not routes (ETX above 2)
FRAME_BYTES = 64 + fleetmodel.PHY_OVERHEAD  # a full fragment frame on air
BATTERY_MV = 3600  # a healthy ER18505


def network(scenario, modules, seed):
    """(levels, parents, frame loss per module) of the scenario's best-link tree; unreachable modules left out."""
    _, loss_db = scenarios.SCENARIOS[scenario](modules, rng=np.random.default_rng(seed))
    channel = radio.Channel(loss_db, seed)
    n = len(loss_db)
    ok = np.vectorize(lambda dbm: radio.prr(dbm - radio.NOISE_DBM, FRAME_BYTES))(channel.mean_dbm)
    ok *= 1.0 - channel.interference
    level = {0: 0}
    frontier = [0]
    parent = {}
    while frontier:
        nxt = []
        for r in range(n):
            if r in level:
                continue
            best = max(frontier, key=lambda s: ok[s, r])
            if ok[best, r] >= USABLE_PRR:
                parent[r] = best
                nxt.append(r)
        for r in nxt:
            level[r] = level[parent[r]] + 1
        frontier = nxt
    reached = sorted(r for r in level if r)
    index = {node: i for i, node in enumerate(reached)}
    return ([level[r] for r in reached], [index.get(parent[r], -1) for r in reached],
            [1.0 - ok[parent[r], r] for r in reached], n - 1 - len(reached))


def run(scenario="chain", modules=240, seed=1):
    """The figures of ``fleetmodel.simulate`` for this scenario, plus how many modules installed."""
    key = bundle.new_key()
    b = bundle.make(build.image("d100fc"), 1, "d100fc", key)
    b.verify(bundle.public_bytes(key))  # the concentrator's check
    levels, parents, losses, unreachable = network(scenario, modules, seed)
    with tempfile.TemporaryDirectory(prefix="balans-ota-") as tmp:
        receivers = []
        for i in range(len(levels)):
            flash = "%s/m%d" % (tmp, i)
            Slots(flash).save(State(0, 0, 0, 0))  # provisioned with a seq-0 image
            updater = Updater(flash, bundle.public_bytes(key), manifest.CLASS_D100FC)
            receivers.append(transfer.Receiver(updater, lambda: BATTERY_MV))
        source = transfer.Source(b.envelope, b.table, b.image, b.manifest)
        held = {}

        def deliver(child, part, index, number):
            sender = parents[child]
            data = held.get((sender, part, index))
            if data is None:
                data = (source if sender < 0 else receivers[sender]).unit(part, index)
                held[(sender, part, index)] = data
            payload = transfer.fragments(source.session, part, index, data)[number]
            _, session, p, x, n, chunk = transfer.parse(payload)
            receivers[child].on_fragment(session, p, x, n, chunk)

        figures = fleetmodel.simulate(b.manifest.size, network=(levels, parents, losses), deliver=deliver)
        installed = 0
        for r in receivers:
            if transfer.parse(r.need())[4] != transfer.DONE:
                continue
            r.updater.install()
            slots = r.updater.slots
            slots.boot()
            installed += slots.confirm() and slots.load().seq == 1
    figures.update({"scenario": scenario, "installed": installed, "unreachable": unreachable,
                    "loss_mean": round(float(sum(losses)) / len(losses), 4),
                    "method": "simulator scenario and channel, real OTA firmware per module; air schedule modelled"})
    return figures
