"""Faults struck into a simulated district (``balans simulate --fault``) and the mesh's recovery."""

import json

import pytest

from balans.cli import main
from simulator import faults
from simulator.network import District


def struck(kind, scenario="block", nodes=24, days=0.25, seed=4):
    return District(scenario, nodes, days, seed, fault=kind).run()


def test_death_the_busiest_relay_dies_and_its_subtree_finds_other_parents():
    d = struck("death")
    try:
        w, f = d.world, d.figures()
        victim = w.by_addr[f["fault_victim"]]
        assert not victim.alive and victim.mesh.relayed > 0
        assert f["rejoin_s"] is not None and f["delivery_after_fault"] >= 0.95
        assert all(n.mesh.routing.preferred.addr != victim.addr for n in w.nodes[1:] if n.alive)
    finally:
        d.close()


def test_burst_jams_the_air_for_its_length_and_the_network_comes_through():
    d = District("block", 24, 0.25, 4, fault="burst")
    w = d.world
    def outside():
        return sum(v for (_, cause), v in w.losses.items() if cause in ("outside", "cca_outside"))

    try:
        w.run(d.fault.at)
        before = outside()
        w.run(d.fault.at + faults.BURST_S / 2)
        assert w.interference_boost == faults.BURST_SHARE
        during = outside() - before
        d.run()
        assert w.interference_boost == 0.0
        f = d.figures()
        assert during / (faults.BURST_S / 2) > 3 * before / d.fault.at  # far more frames lost to it than usual
        assert f["rejoin_s"] is not None and f["delivery_after_fault"] >= 0.95
    finally:
        d.close()


def test_restart_starts_a_new_generation_that_every_module_rejoins():
    d = struck("restart")
    try:
        w, f = d.world, d.figures()
        root = w.nodes[0]
        assert root.mesh.routing.version == 1  # the second boot of its flash
        for n in w.nodes[1:]:
            assert n.mesh.routing.version == 1 and n.mesh.joined and n.mesh.join_count >= 2
        assert f["rejoin_s"] is not None and f["rejoin_s"] < 1800
        assert f["delivery_after_fault"] >= 0.95
    finally:
        d.close()


def test_move_the_carried_module_attaches_where_it_now_stands():
    d = struck("move")
    try:
        w, f = d.world, d.figures()
        moved = w.by_addr[f["fault_victim"]]
        parent = w.by_addr[moved.mesh.routing.preferred.addr]
        assert parent.index in w.channel.neighbours[moved.index]  # a parent it can hear from its new place
        assert f["rejoin_s"] is not None and f["delivery_after_fault"] >= 0.95
    finally:
        d.close()


def test_a_fault_is_the_same_for_the_same_seed(capsys):
    args = ["simulate", "--nodes", "12", "--days", "0.2", "--seed", "6", "--fault", "move", "--json"]
    runs = []
    for _ in range(2):
        assert main(args) == 0
        f = json.loads(capsys.readouterr().out)
        runs.append({k: v for k, v in f.items() if k not in ("wall_s", "cpu_s")})
    assert runs[0] == runs[1] and runs[0]["fault"] == "move" and runs[0]["fault_victim"] is not None


def test_an_unknown_fault_is_refused():
    with pytest.raises(ValueError):
        District("block", 4, 0.1, 1, fault="flood")
