"""An update from the edge agent to the modules: a signed MQTT command or a local file, checked by the
agent before anything is queued, queued on disk, handed to the real J100UC collector over the serial
line, and carried by the real mesh in the simulator to every module; progress comes back."""

import argparse
import json
import time

import cbor2
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from balans.services import Mosquitto
from edge_agent import cli
from edge_agent.agent import Agent
from edge_agent.config import from_dict, to_toml
from edge_agent.linkport import Pipe
from firmware.common.ota import archive
from firmware.common.ota.slots import Slots
from firmware.j100uc.collector import Collector
from protocol import link
from protocol.cose import sign1
from simulator.world import NET_ID
from tests.edge_fixtures import Keys, agent_config, wait_for
from tools.flash import bundle, fleetsim

IMAGE = archive.pack([("app.py", b"VERSION = 3\n"), ("lib/data.bin", bytes(i * 5 & 0xFF for i in range(1200)))])


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Mosquitto(persistence_dir=str(tmp_path_factory.mktemp("mosq"))) as m:
        yield m


def vendor(tmp_path):
    key = bundle.new_key()
    path = tmp_path / "vendor.pub"
    path.write_bytes(bundle.public_bytes(key))
    return key, str(path)


def frames(data):
    """(type, fields, tail) of every link frame in ``data``."""
    return [link.unpack(body) for body in link.Reader().feed(data)]


def test_a_signed_update_command_is_checked_before_anything_is_queued(tmp_path, broker):
    keys = Keys(tmp_path)
    key, pub = vendor(tmp_path)
    config = agent_config(tmp_path, keys, broker.port)
    config["ota"] = {"vendor_key": pub}
    pipe = Pipe()
    agent = Agent(from_dict(config), link=pipe.agent_end).start()
    results = []
    listener = paho.Client(CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: results.append(json.loads(m.payload))
    listener.connect(broker.host, broker.port)
    listener.subscribe("balans/v1/s1/c-0001/result", qos=1)
    listener.loop_start()
    try:
        assert wait_for(lambda: agent.mqtt.connected)
        now = int(time.time())
        good = bundle.make(IMAGE, 5, "d100fc", key).encode()

        def command(cid, data, signer=keys.central, targets=()):
            body = {"v": 1, "conc": "c-0001", "id": cid, "exp": now + 600, "kind": "update", "dst": 0xFFFF,
                    "args": {"bundle": data, "targets": list(targets)}}
            listener.publish("balans/v1/s1/c-0001/cmd", sign1(signer, b"central-1", cbor2.dumps(body)), qos=1)

        command(1, bundle.make(IMAGE, 5, "d100fc", bundle.new_key()).encode())  # not the vendor's signature
        command(2, bundle.make(IMAGE, 5, "j100uc", key).encode())  # another device class
        command(3, good[:-100])  # truncated
        (tmp_path / "stranger").mkdir()
        command(4, good, signer=Keys(tmp_path / "stranger").central)  # a command central did not sign
        command(5, good, targets=range(1, 20))  # more modules than an announcement names
        assert wait_for(lambda: sum(r["status"] == "refused" for r in results) == 5)
        assert not (tmp_path / "queue" / "ota").exists() or not list((tmp_path / "queue" / "ota").iterdir())
        assert not [f for f in frames(pipe.concentrator_end.read_all()) if f[0] == link.L_OTA]
        command(6, good, targets=[0x2A])
        assert wait_for(lambda: any(r.get("status") == "queued" for r in results))
        queued = [r for r in results if r.get("status") == "queued"][0]
        assert queued["id"] == 6 and queued["seq"] == 5
        assert wait_for(lambda: any(f[0] == link.L_OTA for f in frames(pipe.concentrator_end.read_all())))
        job = json.loads((tmp_path / "queue" / "ota" / "1.json").read_text())
        assert job["targets"] == [0x2A] and job["state"] == "running"
        reasons = " ".join(r.get("reason", "") for r in results)
        assert "vendor" in reasons and "class" in reasons and "signature" in reasons
    finally:
        listener.loop_stop()
        agent.stop()


class AgentLine:
    """The serial line between the simulated concentrator and a real agent pumped at every write."""

    def __init__(self, world, agent, pipe):
        self.world, self.agent, self.pipe = world, agent, pipe

    def __call__(self, data):
        self.pipe.concentrator_end.write(data)
        while self.agent.pump():
            pass
        self.world.nodes[0].hal.link_in += self.pipe.concentrator_end.read_all()


def test_a_local_update_file_reaches_every_module_through_the_real_concentrator_and_survives_an_agent_restart(
        tmp_path):
    keys = Keys(tmp_path)
    key, pub = vendor(tmp_path)
    release = tmp_path / "release.bota"
    config = agent_config(tmp_path, keys, 1883)
    config["ota"] = {"vendor_key": pub}
    del config["mqtt"]
    (tmp_path / "agent.toml").write_text(to_toml(config))

    def collector(node):
        modules = {n.addr: ["electricity", "", ""] for n in node.world.nodes[1:]}
        c = Collector(node.hal, {"net_id": NET_ID, "modules": modules}, node.mesh.downlink)
        c.TICK_S = 5.0
        return c

    f = fleetsim.FleetRun("chain", 4, 1, IMAGE, seq=4, concentrator=collector, key=key)
    try:
        release.write_bytes(bundle.make(IMAGE, 4, "d100fc", key).encode())
        w = f.world

        def new_agent():
            pipe = Pipe()
            agent = Agent(from_dict(config), link=pipe.agent_end, clock=lambda: w.epoch + w.now).open()
            w.on_link = AgentLine(w, agent, pipe)
            return agent

        agent = new_agent()
        assert f.join() < 3600
        args = argparse.Namespace(action="update", config=str(tmp_path / "agent.toml"), bundle=str(release), module=[])
        assert cli.run_agent(args) == 0  # queued on disk; the running agent picks it up
        f.start(announce=False)
        root = w.nodes[0]
        while root.mesh.ota.store.updater.download.manifest is None or \
                len(root.mesh.ota.store.updater.download.missing_pages()) > 2:
            w.run(w.now + 5)
        agent.stop()  # the agent goes down mid-transfer
        agent = new_agent()
        f.run_until_done(3 * 3600)
        w.run(w.now + 1800)  # outcomes are reported three times, 10 minutes apart: one will get through
        assert len(f.installed) == 4
        assert all(Slots(n.hal.flash_path()).load().seq == 4 for n in w.nodes[1:])
        job = json.loads((tmp_path / "queue" / "ota" / "1.json").read_text())
        assert job["modules"]["concentrator"] == "holds it"
        assert job["activated"]  # the agent switched the fleet once every module held the image
        assert sorted(a for a, s in job["modules"].items() if s == "installed") == ["%04x" % n.addr
                                                                                  for n in w.nodes[1:]]
        assert job["state"] == "done" and agent.updates.job is None
    finally:
        f.close()
