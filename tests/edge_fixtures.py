"""Test fixtures for the edge agent: keys, a config, and a stand-in for central's ingest.

``Acknowledger`` is a TEST FIXTURE, not central: it subscribes to batches,
verifies them, "stores" readings in a dict keyed like central's readings
(meter, register, ts) and publishes signed acknowledgements, the way
docs/mqtt.md says central does. It records every way exactly-once could fail:
a reading stored twice under different batches, or with a different value.
"""

import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import keys
from protocol.batch import Ack, Signer, Verifier


def wait_for(cond, timeout=30.0):
    """True once ``cond()`` is true, False if it is still false after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Keys:
    def __init__(self, tmp_path):
        self.agent_file = str(tmp_path / "agent.pem")
        self.central_file = str(tmp_path / "central.pem")
        self.central_pub = str(tmp_path / "central.pub")
        self.agent = keys.generate(self.agent_file, str(tmp_path / "agent.pub"))
        self.central = keys.generate(self.central_file, self.central_pub)


def agent_config(tmp_path, k, port, host="127.0.0.1", site="s1", conc="c-0001", **queue):
    q = {"dir": str(tmp_path / "queue"), "max_bytes": 64 << 20, "segment_bytes": 1 << 20, "flush_s": 0.05}
    q.update(queue)
    return {
        "concentrator": {"site": site, "id": conc},
        "queue": q,
        "signing": {"key_file": k.agent_file, "kid": "agent-1"},
        "central": {"keys": {"central-1": k.central_pub}},
        "mqtt": {"host": host, "port": port, "client_id": "agent-%s-%s-%d" % (site, conc, port),
                 "ack_timeout_s": 5.0, "reconnect_min_s": 1, "reconnect_max_s": 2},
        "status": {"interval_s": 0.5},
    }


class Acknowledger:
    """TEST FIXTURE standing in for central's ingest (see module docstring)."""

    def __init__(self, k, host, port, conc="c-0001", reject=()):
        self.signer = Signer(k.central, b"central-1")
        self.verifier = Verifier()
        self.verifier.add_key(b"agent-1", k.agent.public_key(), conc)
        self.batches = set()
        self.readings = {}  # (meter, register, ts) -> value
        self.events = []
        self.stored_twice = []
        self.conflicts = []
        self.delivered = 0
        self.forged = 0
        self.reject = set(reject)
        self.paused = False  # True: receive but do not store or acknowledge (central down)
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-central-%d" % port,
                                  clean_session=False)
        self.client.on_connect = lambda c, *a: c.subscribe("balans/v1/+/+/batch", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async(host, port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.delivered += 1
            if self.paused:
                return
            try:
                batch = self.verifier.verify(msg.payload)
            except ValueError:
                self.forged += 1
                return
            if batch.key in self.reject:
                status = "rejected"
            elif batch.key in self.batches:
                status = "duplicate"
            else:
                status = "stored"
                self.batches.add(batch.key)
                for r in batch.records:
                    k = (r.meter_id, r.register, r.ts)
                    if k in self.readings:
                        (self.conflicts if self.readings[k] != r.value else self.stored_twice).append(k)
                    else:
                        self.readings[k] = r.value
                self.events.extend(tuple(e) for e in batch.events)
            ack = Ack(batch.conc, batch.boot, batch.seq, status, "")
        site, conc = msg.topic.split("/")[2:4]
        client.publish("balans/v1/%s/%s/ack" % (site, conc), self.signer.sign_ack(ack), qos=1)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()
