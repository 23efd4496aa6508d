"""``balans bench agent [--json] [--quick] [--broker HOST:PORT]``: drain a 30-day backlog into central.

The backlog (720 meters x 30 days of hourly total registers = 518,400 meter-hours;
``--quick``: one day) is put in a fresh agent queue, as a broker outage would
leave it. Then a real agent process (``python -m edge_agent run``) starts on it
and the clock runs until central's real ingest (``central.ingest`` on SQLite, in
this process) has committed every reading and the agent has every signed ack.

Figures: ``drain_s`` (agent start to last reading committed), ``meter_hours``,
``agent_rss_mb`` (the agent process's peak RSS, VmHWM), and the baseline
``bare_publish_s``: a bare paho-mqtt QoS 1 loop publishing the same signed bytes
to the same broker (to a topic nobody ingests) in this process, until the last
PUBACK. ``drain_ratio`` = drain_s / bare_publish_s.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from balans.services import Mosquitto, find_broker, mosquitto_binary
from edge_agent import keys
from edge_agent.config import to_toml
from edge_agent.queue import DurableQueue
from protocol.batch import Batch, Record, Signer, Verifier
from protocol.cose import sign1

METERS = 720
DAYS = 30
BATCH = 5000  # the agent's default batch_records
H0 = 20000 * 24  # 2024-10-04: any whole hour will do


def _broker(spec):
    if spec:
        host, _, port = spec.partition(":")
        return host, int(port or 1883), None
    if mosquitto_binary():
        m = Mosquitto().start()
        return m.host, m.port, m
    host, port, _, handle = find_broker()
    return host, port, handle


def _backlog(queue_dir, hours, conc):
    """Fill a queue with ``hours`` x METERS readings in batches of BATCH, oldest first."""
    q = DurableQueue(queue_dir, 1 << 30, 4 << 20).open()
    records = [Record("%04x.%d" % (1 + m // 3, m % 3), (H0 + h) * 3600, "1-0:1.8.0", 1000 * m + 7 * h)
               for h in range(hours) for m in range(METERS)]
    for seq, i in enumerate(range(0, len(records), BATCH)):
        q.append(Batch(conc, 1, seq, records[i:i + BATCH]), (0, 0))
    payloads = [q.read(e) for e in q.entries.values()]
    q.close()
    return len(records), payloads


def _peak_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _bare_publish(host, port, messages):
    done = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="balans-bench-bare")
    c.on_publish = lambda *a: done.append(1)
    c.max_inflight_messages_set(8)
    c.connect(host, port)
    c.loop_start()
    t0 = time.perf_counter()
    for m in messages:
        c.publish("balans-bench/bare", m, qos=1)
    while len(done) < len(messages):
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return elapsed


def agent(args):
    from central.ingest import Ingestor, MqttIngest
    from central.store import open_store

    hours = 24 if args.quick else DAYS * 24
    work = tempfile.mkdtemp(prefix="balans-bench-agent-")
    host, port, broker = _broker(getattr(args, "broker", None))
    proc = central = store = None
    try:
        agent_key = keys.generate(os.path.join(work, "agent.pem"))
        central_key = keys.generate(os.path.join(work, "central.pem"), os.path.join(work, "central.pub"))
        conc = "bench-%d" % os.getpid()
        meter_hours, payloads = _backlog(os.path.join(work, "queue"), hours, conc)
        store = open_store(os.path.join(work, "central.db"))
        verifier = Verifier()
        verifier.add_key(b"bench-agent", agent_key.public_key(), conc)
        central = MqttIngest(Ingestor(store, verifier, Signer(central_key, b"bench-central")), host, port,
                             share_group="bench-%d" % os.getpid()).start()
        config = {
            "concentrator": {"site": "bench", "id": conc},
            "queue": {"dir": os.path.join(work, "queue"), "max_bytes": 1 << 30},
            "signing": {"key_file": os.path.join(work, "agent.pem"), "kid": "bench-agent"},
            "central": {"keys": {"bench-central": os.path.join(work, "central.pub")}},
            "mqtt": {"host": host, "port": port},
        }
        with open(os.path.join(work, "agent.toml"), "w") as f:
            f.write(to_toml(config))
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", os.path.join(work, "agent.toml")],
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        segments = os.path.join(work, "queue")
        deadline = time.monotonic() + 600
        while any(n.endswith(".q") for n in os.listdir(segments)):  # the agent deletes acknowledged segments
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the agent did not drain its queue (exit %s)" % proc.poll())
            time.sleep(0.01)
        drain_s = time.perf_counter() - t0
        rss = _peak_rss_mb(proc.pid)
        stored = store.query("SELECT COUNT(*) FROM registers")[0][0]
        if stored != meter_hours:
            raise RuntimeError("central stored %d of %d readings" % (stored, meter_hours))
        signed = [sign1(agent_key, b"bench-agent", p) for p in payloads]
        bare = _bare_publish(host, port, signed)
        return {"meter_hours": meter_hours, "drain_s": round(drain_s, 2), "agent_rss_mb": round(rss, 1),
                "bare_publish_s": round(bare, 2), "drain_ratio": round(drain_s / bare, 1),
                "batches": len(payloads), "mb_published": round(sum(map(len, signed)) / 1e6, 1),
                "broker": "%s:%d" % (host, port)}
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait()
        if central:
            central.stop()
        if store:
            store.close()
        if broker:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


BENCHMARKS = {"agent": agent}
