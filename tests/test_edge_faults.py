"""Fault tests: after each fault, every reading produced is stored by central's real ingest exactly once.

Each test runs its own Mosquitto, the real J100UC collector (modules answering
backfill from their archives), the agent, and central.ingest on SQLite.
"Exactly once" is checked twice: central's registers equal the readings the
modules produced (none missing, none with another value), and the batches
central stored carry exactly that many records (no reading went in twice).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import cbor2
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from balans.services import Mosquitto
from edge_agent.agent import Agent
from edge_agent.config import to_toml
from protocol.cose import sign1
from tests.edge_fixtures import Keys, agent_config, wait_for
from tests.edge_world import Central, Concentrator, TcpLine, expected_readings
from balans.toolchain import REPO

MODULES = [0x10 + i for i in range(8)]


@pytest.fixture
def world(tmp_path):
    """broker, keys, central (started), and a cleanup list."""
    (tmp_path / "mosq").mkdir()
    broker = Mosquitto(persistence_dir=str(tmp_path / "mosq")).start()
    keys = Keys(tmp_path)
    central = Central(tmp_path, keys, broker).start()
    cleanup = []
    yield broker, keys, central, cleanup
    for stop in reversed(cleanup):
        stop()
    central.close()
    broker.stop()


def assert_exactly_once(central, modules, hours):
    want = expected_readings(modules, hours)
    assert wait_for(lambda: len(central.readings()) >= len(want), 60), (len(central.readings()), len(want))
    assert central.readings() == want
    assert central.records_in_batches() == len(want)


def test_broker_down_for_a_simulated_day_and_back(tmp_path, world):
    broker, keys, central, cleanup = world
    conc = Concentrator(tmp_path, MODULES)
    cleanup.append(conc.stop)
    agent = Agent(agent_config(tmp_path, keys, broker.port, batch_records=64), link=conc.line.agent_end).start()
    cleanup.append(agent.stop)
    conc.report(range(2))
    assert wait_for(lambda: len(central.readings()) == 2 * 2 * len(MODULES))
    broker.stop()
    conc.report(range(2, 26))  # a day of hourly reports while the broker is gone
    assert wait_for(lambda: agent.status()["queue"]["records"] == 24 * 2 * len(MODULES))
    assert not agent.mqtt.connected
    broker.start()  # same port, as after a broker restart
    assert agent.wait_idle(60)
    assert_exactly_once(central, MODULES, range(26))
    assert agent.mqtt.connects >= 2


def test_duplicate_deliveries_are_stored_once(tmp_path, world):
    broker, keys, central, cleanup = world
    wire = []
    spy = paho.Client(CallbackAPIVersion.VERSION2)
    spy.on_message = lambda c, u, m: wire.append(m.payload)
    spy.connect(broker.host, broker.port)
    spy.subscribe("balans/v1/+/+/batch", qos=1)
    spy.loop_start()
    cleanup.append(spy.loop_stop)
    central.stop()  # central away longer than the agent's ack timeout: the agent re-sends
    conc = Concentrator(tmp_path, MODULES)
    cleanup.append(conc.stop)
    agent = Agent(agent_config(tmp_path, keys, broker.port, batch_records=64), link=conc.line.agent_end)
    agent.config.mqtt.ack_timeout_s = 0.5
    agent.start()
    cleanup.append(agent.stop)
    conc.report(range(6))
    assert wait_for(lambda: agent.counters["batches_sent"] > 2 * len(agent.queue.entries) > 0)
    central.start()
    assert agent.wait_idle(30)
    # and someone on the broker replays every batch it saw
    seen = list(wire)
    handled = central.mqtt.handled
    for payload in seen:
        spy.publish("balans/v1/s1/c-0001/batch", payload, qos=1).wait_for_publish()
    assert wait_for(lambda: central.mqtt.handled >= handled + len(seen))
    assert_exactly_once(central, MODULES, range(6))
    # central counts a replay as handled before its acknowledgement has crossed the broker
    assert wait_for(lambda: agent.counters["acks_duplicate"] + agent.counters["acks_unknown"] > 0)


def test_concentrator_restarts_lose_nothing(tmp_path, world):
    broker, keys, central, cleanup = world
    conc = Concentrator(tmp_path, MODULES)
    cleanup.append(conc.stop)
    agent = Agent(agent_config(tmp_path, keys, broker.port, batch_records=64), link=conc.line.agent_end).start()
    cleanup.append(agent.stop)
    for round_ in range(4):
        conc.report(range(round_ * 3, round_ * 3 + 2))
        time.sleep(0.3)  # delivered, and the safe hours reach flash (save_s = 0.05)
        conc.report([round_ * 3 + 2])
        conc.restart()  # power cycle at once: the ring with the last hour is gone
    conc.report([12])  # the first report after the last restart shows the gap
    assert agent.wait_idle(30) and wait_for(lambda: conc.collector.ring.held() == 0)
    want = expected_readings(MODULES, range(13))
    assert wait_for(lambda: len(central.readings()) >= len(want), 30)
    assert central.readings() == want  # nothing missing, nothing with another value
    assert agent.session.boot == conc.collector.boot
    assert conc.down.backfills > 0  # lost rings were noticed and asked back from the archives


def test_disk_full_holds_the_link_and_loses_nothing(tmp_path, world):
    broker, keys, central, cleanup = world
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    cleanup.append(lambda: subprocess.run(["umount", "-l", str(disk)]))
    central.stop()  # nothing drains: the queue fills the disk
    conc = Concentrator(tmp_path, MODULES, hold_records=512)
    cleanup.append(conc.stop)
    cfg = agent_config(tmp_path, keys, broker.port, batch_records=64, dir=str(disk / "q"),
                       max_bytes=64 << 20, segment_bytes=16 << 10)
    agent = Agent(cfg, link=conc.line.agent_end).start()
    cleanup.append(agent.stop)
    hours = range(300)
    for h in hours:
        conc.report([h])
        time.sleep(0.005)
    assert wait_for(lambda: agent.status()["queue"]["full"])
    assert agent.queue.write_errors > 0
    # the concentrator's ring overflowed too: hours are marked to be asked back from the archives
    assert wait_for(lambda: sum(m.gaps.missing() for m in conc.collector.modules.values()) > 0)
    central.start()
    want = expected_readings(MODULES, hours)
    assert wait_for(lambda: len(central.readings()) >= len(want), 60), (len(central.readings()), len(want))
    assert_exactly_once(central, MODULES, hours)
    assert agent.queue.thinned_records == 0 and conc.down.backfills > 0


def test_corrupted_segment_costs_one_batch_which_central_asks_back(tmp_path, world):
    broker, keys, central, cleanup = world
    central.stop()
    conc = Concentrator(tmp_path, MODULES)
    cleanup.append(conc.stop)
    cfg = agent_config(tmp_path, keys, broker.port, batch_records=2 * len(MODULES))
    agent = Agent(cfg, link=conc.line.agent_end).start()
    for h in range(8):
        conc.report([h])
        assert wait_for(lambda: agent.status()["queue"]["records"] == (h + 1) * 2 * len(MODULES))
    agent.stop()
    entries = list(agent_entries(tmp_path))
    victim = entries[3]
    with open(victim[0], "r+b") as f:
        f.seek(victim[1] + 80)
        b = f.read(1)
        f.seek(victim[1] + 80)
        f.write(bytes([b[0] ^ 0x40]))
    agent = Agent(cfg, link=conc.line.agent_end).open()
    assert agent.queue.corrupt_records == 1
    agent.start()
    cleanup.append(agent.stop)
    central.start()
    assert agent.wait_idle(30)
    have = central.readings()
    want = expected_readings(MODULES, range(8))
    missing = set(want) - set(have)
    assert missing and len(missing) <= 2 * len(MODULES)  # one batch: one hour of every module
    assert all(have[k] == want[k] for k in have)
    # central asks the modules for those hours again, with a signed command
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    cleanup.append(pub.loop_stop)
    for n, addr in enumerate(sorted({int(m[:4], 16) for m, _, _ in missing})):
        hours = sorted(ts // 3600 for m, _, ts in missing if int(m[:4], 16) == addr)
        body = {"v": 1, "conc": "c-0001", "id": 100 + n, "exp": int(time.time()) + 600, "kind": "backfill",
                "dst": addr, "args": {"from_hour": hours[0], "count": hours[-1] - hours[0] + 1}}
        pub.publish("balans/v1/s1/c-0001/cmd", sign1(keys.central, b"central-1", cbor2.dumps(body)), qos=1)
    assert_exactly_once(central, MODULES, range(8))


def agent_entries(tmp_path):
    """(segment path, offset) of every queued batch, oldest first."""
    from edge_agent.queue import DurableQueue

    q = DurableQueue(str(tmp_path / "queue"), 64 << 20, 1 << 20).open()
    out = [(e.segment.path, e.offset) for e in q.entries.values()]
    q.close()
    return out


def test_kill_9_at_many_points_while_publishing(tmp_path, world):
    broker, keys, central, cleanup = world
    line = TcpLine()
    conc = Concentrator(tmp_path, MODULES, line=line)
    cleanup.append(conc.stop)
    cfg = agent_config(tmp_path, keys, broker.port, batch_records=len(MODULES))
    toml = tmp_path / "agent.toml"
    cfg["concentrator"]["link"] = line.url
    toml.write_text(to_toml(cfg))
    rng = random.Random(5)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    kills = 0
    hour = 0
    procs = []
    while kills < 52:
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(toml)], cwd=str(REPO),
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        conc.report(range(hour, hour + 2))
        hour += 2
        assert wait_for(lambda: _boot(tmp_path) == kills + 1, 20)  # it has opened its queue
        time.sleep(rng.uniform(0.0, 0.4))  # then dies in recovery, link reading, appends or publishing
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    final = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(toml)], cwd=str(REPO),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cleanup.append(lambda: (final.terminate(), final.wait()))
    assert_exactly_once(central, MODULES, range(hour))
    assert wait_for(lambda: _status_boot(tmp_path) == kills + 1)  # a new boot each start: no dedup key reused


def _boot(tmp_path):
    try:
        return int((tmp_path / "queue" / "agent.boot").read_text())
    except (OSError, ValueError):
        return 0


def _status_boot(tmp_path):
    try:
        return json.loads((tmp_path / "queue" / "status.json").read_text())["boot"]
    except (OSError, ValueError, KeyError):
        return 0
