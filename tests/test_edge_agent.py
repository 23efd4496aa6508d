"""The edge agent end to end: concentrator collector -> link -> agent -> real Mosquitto -> acknowledger."""

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
from edge_agent.config import to_toml
from protocol import messages
from protocol.batch import Ack, Record, Signer
from protocol.cose import sign1
from tests.edge_fixtures import Acknowledger, Keys, agent_config, wait_for
from tests.edge_world import H, Central, Concentrator, expected_readings


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Mosquitto(persistence_dir=str(tmp_path_factory.mktemp("mosq"))) as m:
        yield m


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


def stranger_key(tmp_path):
    """A key central never registered, under central's kid: what a forger would use."""
    (tmp_path / "stranger").mkdir(exist_ok=True)
    return Keys(tmp_path / "stranger").central


class Listener:
    """Collects what the agent publishes on one topic."""

    def __init__(self, broker, topic):
        self.messages = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2)
        self.c.on_message = lambda c, u, m: self.messages.append(m.payload)
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_readings_flow_from_the_mesh_to_central_exactly_once(tmp_path, keys, broker):
    central = Central(tmp_path, keys, broker).start()
    conc = Concentrator(tmp_path, [0x10, 0x11])
    agent = Agent(agent_config(tmp_path, keys, broker.port), link=conc.line.agent_end).start()
    try:
        conc.report(range(6))
        want = expected_readings([0x10, 0x11], range(6))
        assert wait_for(lambda: len(central.readings()) >= len(want))
        assert agent.wait_idle(20)
        assert central.readings() == want
        assert central.records_in_batches() == len(want)  # no reading went to central twice
        assert conc.collector.ring.held() == 0
        st = agent.status()
        assert st["queue"]["batches"] == 0 and st["link"]["records_in"] == len(want)
    finally:
        agent.stop()
        conc.stop()
        central.close()


def test_forged_acks_are_refused_and_data_stays_queued(tmp_path, keys, broker):
    agent = Agent(agent_config(tmp_path, keys, broker.port)).start()
    forger = Signer(stranger_key(tmp_path), b"central-1")
    agent.inject([Record("0010.0", H * 3600, "1-0:1.8.0", 5)])
    assert wait_for(lambda: agent.counters["batches_sent"] >= 1)
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    pub.publish("balans/v1/s1/c-0001/ack", forger.sign_ack(Ack("c-0001", agent.boot, 0, "stored")), qos=1).wait_for_publish()
    pub.publish("balans/v1/s1/c-0001/ack", b"\x00garbage", qos=1).wait_for_publish()
    assert wait_for(lambda: agent.counters["acks_forged"] == 2)
    assert len(agent.queue.entries) == 1  # still waiting for central's real ack
    # the genuine key releases it
    real = Signer(keys.central, b"central-1")
    pub.publish("balans/v1/s1/c-0001/ack", real.sign_ack(Ack("c-0001", agent.boot, 0, "stored")), qos=1).wait_for_publish()
    assert agent.wait_idle(10)
    pub.loop_stop()
    agent.stop()


def test_rejected_batches_are_quarantined_not_retried(tmp_path, keys, broker):
    agent = Agent(agent_config(tmp_path, keys, broker.port)).open()
    ack = Acknowledger(keys, broker.host, broker.port, reject={("c-0001", agent.boot, 0)})
    agent.start()
    agent.inject([Record("0010.0", H * 3600, "1-0:1.8.0", 5)])
    assert agent.wait_idle(15)
    assert agent.counters["acks_rejected"] == 1
    assert list((tmp_path / "queue" / "quarantine").glob("rejected-*.cbor"))
    agent.stop()
    ack.stop()


def test_a_central_that_rejects_everything_fills_only_a_quarter_of_the_budget_with_quarantine(tmp_path, keys, broker):
    config = agent_config(tmp_path, keys, broker.port, max_bytes=64 << 10, segment_bytes=16 << 10, batch_records=20)
    agent = Agent(config).open()
    ack = Acknowledger(keys, broker.host, broker.port, reject={("c-0001", agent.boot, n) for n in range(40)})
    agent.start()
    for n in range(40):  # 40 batches of 20 readings, about 1.2 kB each
        agent.inject([Record("0010.0", (H + 20 * n + i) * 3600, "1-0:1.8.0", 20 * n + i) for i in range(20)])
    assert wait_for(lambda: agent.counters["acks_rejected"] == 40)
    quarantine = tmp_path / "queue" / "quarantine"
    size = sum(f.stat().st_size for f in quarantine.iterdir())
    held = agent.status()["queue"]["rejected_held"]
    assert 0 < size <= (64 << 10) // 4 and held > 0
    assert len(agent.queue.entries) == held  # kept on disk, not lost
    sent = agent.counters["batches_sent"]
    time.sleep(2)
    assert agent.counters["batches_sent"] == sent  # and not sent again and again
    # Central is fixed; the operator sends the quarantine again, and the held batches go too.
    ack.reject.clear()
    assert cli.run_agent(argparse.Namespace(action="requeue", config=str(_toml(tmp_path, config)), files=[])) == 0
    assert wait_for(lambda: len(ack.readings) == 800, timeout=60)
    assert agent.wait_idle(20) and agent.status()["queue"]["rejected_held"] == 0
    agent.stop()
    ack.stop()


def _toml(tmp_path, config):
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(config))
    return path


def _command(keys, body):
    return sign1(keys.central, b"central-1", cbor2.dumps(body))


def test_signed_commands_reach_the_mesh_and_bad_ones_are_refused(tmp_path, keys, broker):
    conc = Concentrator(tmp_path, [0x10])
    results = Listener(broker, "balans/v1/s1/c-0001/result")
    agent = Agent(agent_config(tmp_path, keys, broker.port), link=conc.line.agent_end).start()
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert wait_for(lambda: agent.mqtt.connected and conc.collector.link.agent_seen)
        now = int(time.time())
        good = {"v": 1, "conc": "c-0001", "id": 1, "exp": now + 600, "kind": "relay", "dst": 0x10,
                "args": {"action": 0, "reason": 3}}
        topic = "balans/v1/s1/c-0001/cmd"
        pub.publish(topic, _command(keys, good), qos=1)
        assert wait_for(lambda: any(p[0] == 0x13 for d, p in conc.down.sent))
        dst, payload = [s for s in conc.down.sent if s[1][0] == 0x13][0]
        assert dst == 0x10
        relay = messages.decode(payload)
        conc.collector.on_uplink(0x10, messages.Ack(relay.seq, messages.ST_OK, 0).encode())
        pub.publish(topic, _command(keys, good), qos=1)  # replayed
        pub.publish(topic, _command(keys, dict(good, id=2, exp=now - 5)), qos=1)  # expired
        pub.publish(topic, sign1(stranger_key(tmp_path), b"central-1", cbor2.dumps(dict(good, id=3))), qos=1)  # forged
        pub.publish(topic, _command(keys, dict(good, id=4, conc="c-9")), qos=1)  # another concentrator's
        assert wait_for(lambda: agent.counters["commands_refused"] == 4)
        assert wait_for(lambda: any(json.loads(m).get("status") == "ok" for m in results.messages))
        assert wait_for(lambda: sum(json.loads(m)["status"] == "refused" for m in results.messages) == 4)
        got = [json.loads(m) for m in results.messages]
        assert [g["id"] for g in got if g["status"] == "ok"] == [1]
        assert agent.counters["commands_forwarded"] == 1
    finally:
        pub.loop_stop()
        results.stop()
        agent.stop()
        conc.stop()


def test_status_topic_reports_queue_and_last_will(tmp_path, keys, broker):
    status = Listener(broker, "balans/v1/s1/c-0002/status")
    agent = Agent(agent_config(tmp_path, keys, broker.port, conc="c-0002")).start()
    agent.inject([Record("0010.0", H * 3600, "1-0:1.8.0", 5)])
    assert wait_for(lambda: any(json.loads(m)["queue"]["batches"] == 1 for m in status.messages
                                if b"queue" in m))
    agent.stop()
    assert wait_for(lambda: json.loads(status.messages[-1])["state"] == "offline")
    status.stop()
