"""The concentrator's module table: installers' keys reach it through the edge agent (``balans agent
modules``), over the real serial link, into the J100UC board's flash; modules it did not know join once
it does; the table survives a concentrator restart; a removed module is refused again."""

import argparse
import csv
import json
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edge_agent import cli
from edge_agent.agent import Agent
from edge_agent.linkport import Pipe
from edge_agent.roster import read_csv
from firmware.common.ota.slots import make_dirs, write_atomic
from firmware.d100fc.module import Module
from firmware.j100uc.board import Board
from simulator import scenarios
from simulator.network import CHANNELS
from simulator.world import NET_ID, World
from tests.edge_fixtures import Keys, agent_config
from tests.test_j100uc_board import ota_world


def run_cli(argv):
    p = argparse.ArgumentParser()
    cli.configure_agent(p)
    return cli.run_agent(p.parse_args(argv))


def provisioning_record(tmp_path, world, addrs):
    """keys.csv and meters.csv as `balans flash` writes them (docs/installer.md)."""
    keys, meters = tmp_path / "keys.csv", tmp_path / "meters.csv"
    with open(keys, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "key"])
        w.writerows(["%04x" % a, world.module_key(a).hex()] for a in addrs)
    with open(meters, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["meter_id", "group_id", "resource", "pulse_constant", "serial_number", "initial_reading",
                    "device_id"])
        w.writerows(["%04x.%d" % (a, ch), "house-1", c["resource"], c["pulse_const"], "SN%d" % a, 0, "%04x" % a]
                    for a in addrs for ch, c in enumerate(CHANNELS))
    return str(keys), str(meters)


class Site:
    """A 3-module chain whose concentrator runs the J100UC board, its agent on the other end of the link."""

    def __init__(self, tmp_path):
        _, loss = scenarios.chain(3, rng=np.random.default_rng(6))
        # 10 dB closer than the chain's houses: the first house heard the concentrator at -106 dBm,
        # at sensitivity, and whether it ever attached depended on the seed (this is about the roster)
        self.world = w = World(loss - 10.0, seed=6, days=1)
        self.root = root = w.nodes[0]
        flash = root.hal.flash_path()
        for name, data in (("keys/network.key", w.net_key), ("keys/vendor.pub", ota_world.VENDOR_KEY),
                           ("config.json", json.dumps({"net_id": NET_ID, "modules": {}}).encode())):
            make_dirs((flash + "/" + name).rsplit("/", 1)[0])
            write_atomic(flash + "/" + name, data)
        self.pipe = Pipe()
        w.on_link = self.pipe.concentrator_end.write
        config = agent_config(tmp_path, Keys(tmp_path), 1883)
        config["status"]["interval_s"] = 600  # simulated seconds: status.json is written with an fsync
        (tmp_path / "agent.toml").write_text(cli.agent_config.to_toml(config))
        self.conf = ["--config", str(tmp_path / "agent.toml")]
        self.agent = Agent(config, link=self.pipe.agent_end, clock=lambda: w.epoch + w.now).open()
        self.power_on()
        for node in w.nodes[1:]:
            w.give_meters(node)
            w.start_node(node, self._module)
        w.at(0, self._loop, None)

    def power_on(self):
        self.board = Board(self.root.hal)
        self.root.alive, self.root.mesh = True, self.board.mesh

    @staticmethod
    def _module(node):
        app = Module(node.hal, {"addr": node.addr, "channels": [dict(c) for c in CHANNELS]}, node.mesh.uplink)
        node.mesh.on_downlink = app.on_downlink
        node.mesh.on_broadcast = app.on_broadcast
        app.boot()
        return app

    def _loop(self, world, _):
        self.root.hal.link_in += self.pipe.concentrator_end.read_all()
        self.agent.pump()
        world.at(world.now + self.board.step() / 1000, self._loop, None)

    def modules(self):
        return self.world.nodes[1:]


def test_modules_the_concentrator_did_not_know_join_once_the_agent_gives_it_their_keys(tmp_path):
    site = Site(tmp_path)
    w = site.world
    w.run(1200)
    assert not any(n.mesh.joined for n in site.modules())  # nobody opens their joins yet
    assert site.board.collector.unknown == 0 and site.board.collector.modules == {}

    addrs = [n.addr for n in site.modules()]
    keys_csv, meters_csv = provisioning_record(tmp_path, w, addrs)
    assert run_cli(["modules", "add", "--keys", keys_csv, "--meters", meters_csv] + site.conf) == 0
    roster_file = tmp_path / "queue" / "roster.json"
    assert stat.S_IMODE(os.stat(roster_file).st_mode) == 0o600  # it holds keys
    w.run(w.now + 2 * 3600)
    collector = site.board.collector
    assert sorted(collector.modules) == addrs
    assert all(n.mesh.joined for n in site.modules())
    assert all(collector.modules[a].last_hour is not None for a in addrs)  # their hours arrive
    assert site.agent.roster.status() == {"modules": 3, "held": 3, "pending": []}
    flash = site.root.hal.flash_path()
    assert open(flash + "/keys/modules/%04x.key" % addrs[0], "rb").read() == w.module_key(addrs[0])

    # The concentrator restarts: its table is on flash, and the agent checks it again.
    site.power_on()
    assert sorted(site.board.collector.modules) == addrs and site.board.mesh.module_keys.get(addrs[1])
    w.run(w.now + 600)
    assert site.agent.roster.status()["held"] == 3

    # A module taken out of service: its key leaves the concentrator and its frames are refused again.
    assert run_cli(["modules", "remove", "%04x" % addrs[2]] + site.conf) == 0
    w.run(w.now + 600)
    assert sorted(site.board.collector.modules) == addrs[:2]
    assert site.board.mesh.module_keys.get(addrs[2]) is None
    assert not os.path.exists(flash + "/keys/modules/%04x.key" % addrs[2])
    assert site.agent.roster.status() == {"modules": 2, "held": 3, "pending": []}


def test_a_bad_provisioning_record_is_refused_line_by_line(tmp_path):
    keys, meters = tmp_path / "keys.csv", tmp_path / "meters.csv"
    keys.write_text("device_id,key\n002a,%s\n2b,%s\n002c,1234\n" % ("11" * 16, "22" * 16))
    meters.write_text("meter_id,resource\n002a.0,electricity\n002a.3,water\n002a.1,steam\n00ff.0,water\n")
    with pytest.raises(ValueError) as e:
        read_csv(str(keys), str(meters))
    lines = str(e.value).splitlines()
    assert lines == [
        "%s line 3: device id '2b' is not a module's 4 hex digits" % keys,
        "%s line 4: the key of 002c is not 32 hex digits" % keys,
        "%s line 3: meter id '002a.3' is not a module's meter (002a.0 .. 002a.2)" % meters,
        "%s line 4: resource 'steam' unknown; use one of electricity, heat, gas, water" % meters,
        "%s line 5: module 00ff has no key in %s" % (meters, keys),
    ]
    keys.write_text("device,key\n")
    with pytest.raises(ValueError, match="no column device_id"):
        read_csv(str(keys), str(meters))


@settings(max_examples=300, deadline=None)
@given(keys=st.binary(max_size=200), meters=st.binary(max_size=200))
def test_any_bytes_as_a_provisioning_record_give_modules_or_a_clear_error(tmp_path_factory, keys, meters):
    d = tmp_path_factory.mktemp("csv")
    (d / "k.csv").write_bytes(b"device_id,key\n" + keys)
    (d / "m.csv").write_bytes(b"meter_id,resource\n" + meters)
    try:
        modules = read_csv(str(d / "k.csv"), str(d / "m.csv"))
    except ValueError as e:
        assert str(e)
    else:
        assert all(len(m["key"]) == 32 and len(m["resources"]) == 3 for m in modules.values())
