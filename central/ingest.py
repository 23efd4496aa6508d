"""Ingest: signed batches in from MQTT, acknowledgements out after the commit.

``Ingestor.handle(topic, payload)`` does the whole job for one message and returns
the Ack to send; it needs no broker, so tests and the demo can call it directly.
``MqttIngest`` wires it to a broker with a shared subscription, so several workers
(each its own process or thread, on the same store) split the load.

For the batches waiting (up to ``BATCHES_PER_COMMIT``), in one transaction:
verify each COSE signature against the registered concentrator keys; refuse
(quarantine with the reason, Ack "rejected") what fails; claim the dedup key (conc, boot, seq), so a repeat answers
"duplicate" and stores nothing; store register readings and events; derive the
hourly values the readings change (late or out-of-order readings re-derive the
span they fall into and mark those days stale for the balances). The Acks
(and the broker's PUBACKs) are sent only after the commit: an agent drops a
batch only once it is stored.
"""

import queue
import ssl
import threading
import time
import uuid
from collections import defaultdict

import paho.mqtt.client as mqtt

from central import derive
from central.csvio import EVENT_NAMES
from central.store import MAX_REGISTER
from protocol import obis
from protocol.batch import Ack, U64
from protocol.cose import loads, parse_sign1
from protocol.errors import ProtocolError

TOPIC_PREFIX = "balans/v1"
SHARE_GROUP = "balans-central"
QOS = 1  # at least once both ways: the dedup key makes repeats harmless
# A worker that meets readings of a meter it does not know reads the model again, at most
# this often: an operator may have registered the meter since (balans central import).
MODEL_RELOAD_S = 30
# Batches a worker stores in one transaction when they are waiting: enough that a backlog
# drains at one commit per many batches, few enough that a failed commit resends little.
BATCHES_PER_COMMIT = 50


class Ingestor:
    """Verifies, stores and acknowledges batches. ``ack_signer`` is a protocol.batch.Signer of central's key."""

    def __init__(self, store, verifier, ack_signer, prefix=TOPIC_PREFIX):
        self.store = store
        self.verifier = verifier
        self.ack_signer = ack_signer
        self.prefix = prefix.rstrip("/")
        self._meters = {}
        self._reloaded = float("-inf")
        self.reload_model()

    def reload_model(self):
        """Read the model again; derive the stored readings of meters registered since the last read."""
        model = self.store.load_model()
        new = [mid for mid in model.meters if mid not in self._meters]
        self._meters = model.meters
        self._rows = model.meter_index()
        self._reloaded = time.monotonic()
        if new and self._rows:
            with self.store.transaction():
                derive_registered(self.store, model, new)

    def parse_topic(self, topic):
        """(site, conc) of ``<prefix>/<site>/<conc>/batch``; ValueError otherwise."""
        head, _, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if head or len(parts) != 3 or parts[2] != "batch" or not parts[0] or not parts[1]:
            raise ValueError("topic %r is not %s/<site>/<conc>/batch" % (topic, self.prefix))
        return parts[0], parts[1]

    def ack_topic(self, topic):
        return topic[: -len("batch")] + "ack"

    def handle(self, topic, payload):
        """Store one batch message; return its Ack (already committed when returned)."""
        return self.handle_many([(topic, payload)])[0]

    def handle_many(self, messages):
        """Store (topic, payload) messages in one transaction; return their Acks, committed when returned.

        One commit for many batches is what lets a concentrator's backlog drain at the
        rate of verification, not of commits; a failure stores none of them (the caller
        sends no Ack, so every agent resends).
        """
        checked = [self._check(topic, payload) for topic, payload in messages]
        acks, spans = [], {}
        with self.store.transaction():
            for (topic, payload), (batch, refusal) in zip(messages, checked):
                if batch is None:
                    acks.append(self._refuse(topic, payload, *refusal))
                elif not self.store.claim_batch(batch.conc, batch.boot, batch.seq, len(batch.records)):
                    acks.append(Ack(batch.conc, batch.boot, batch.seq, "duplicate"))
                else:
                    self.store.add_registers([(r.meter_id, r.register, r.ts, r.value) for r in batch.records])
                    self.store.add_events([(m, ts, EVENT_NAMES.get(code, "code%d" % code), value)
                                           for m, ts, code, value in batch.events])
                    for key, (t0, t1) in self._spans(batch.records).items():
                        lo, hi = spans.get(key, (t0, t1))
                        spans[key] = (min(lo, t0), max(hi, t1))
                    acks.append(Ack(batch.conc, batch.boot, batch.seq, "stored"))
            derive_spans(self.store, self._meters, self._rows, spans)
        return acks

    def _check(self, topic, payload):
        """(verified batch, None) or (None, (reason, conc)) for one message; reads the model again if due."""
        try:
            _, conc = self.parse_topic(topic)
        except ValueError as e:
            return None, (str(e), "")
        try:
            batch = self.verifier.verify(payload)
        except ProtocolError as e:
            return None, (str(e), conc)
        if batch.conc != conc:
            return None, ("batch of %r arrived on the topic of %r" % (batch.conc, conc), conc)
        too_big = [r for r in batch.records if r.value > MAX_REGISTER]
        if too_big:
            return None, ("register value %d above 2**63-1" % too_big[0].value, conc)
        if (any(r.meter_id not in self._meters for r in batch.records)
                and time.monotonic() - self._reloaded >= MODEL_RELOAD_S):
            self.reload_model()
        return batch, None

    def signed_ack(self, ack):
        return self.ack_signer.sign_ack(ack)

    def _spans(self, records):
        """{(meter_id, register): (first ts, last ts)} of the known meters' total registers in ``records``."""
        times = defaultdict(list)
        for r in records:
            meter = self._meters.get(r.meter_id)
            if meter is not None and obis.parse(r.register) == (meter.resource, 0):
                times[(r.meter_id, r.register)].append(r.ts)
        return {k: (min(ts), max(ts)) for k, ts in times.items()}

    def _refuse(self, topic, payload, reason, conc):
        """Quarantine a message; its Ack names the batch key the unverified payload claims, if any."""
        with self.store.transaction():  # the caller's, when it has one
            self.store.quarantine(topic, reason, payload if isinstance(payload, (bytes, bytearray)) else b"")
        boot, seq = claimed_key(payload, conc)
        return Ack(conc, boot, seq, "rejected", reason[:200])


def derive_spans(store, meters, rows, spans):
    """Store the hourly values of stored register readings.

    ``spans``: {(meter_id, register): (t0, t1)}; the readings from the last one
    before t0 to the first one after t1 are used, so a reading that fills a gap
    re-derives the hours on both of its sides.
    """
    hrows, hours, values, quality = [], [], [], []
    for (mid, register), (t0, t1) in spans.items():
        meter = meters[mid]
        span = store.register_span(mid, register, t0 - 1, t1 + 1)
        for hour, value, q in derive.hourly(span, meter.pulse_constant, meter.rollover, store.replacements(mid)):
            hrows.append(rows[mid])
            hours.append(hour)
            values.append(value)
            quality.append(q)
    if hrows:
        store.put_hourly(hrows, hours, values, quality)


def derive_registered(store, model, meter_ids):
    """Derive every stored reading of ``meter_ids``' total registers, as after registering them.

    Readings of a meter central does not know are stored as they come; this gives
    them hourly values once the meter is registered (or its pulse constant,
    rollover or replacements are corrected). Returns the number of registers derived.
    """
    wanted = set(meter_ids)
    spans = {}
    for mid, register, t0, t1 in store.register_ranges():
        meter = model.meters.get(mid)
        if mid in wanted and meter is not None and obis.parse(register) == (meter.resource, 0):
            spans[(mid, register)] = (int(t0), int(t1))
    derive_spans(store, model.meters, model.meter_index(), spans)
    return len(spans)


def claimed_key(payload, conc):
    """(boot, seq) the unverified payload claims for ``conc``, or (0, 0) when it claims none."""
    try:
        body = loads(parse_sign1(payload)[2], "batch payload")
    except ProtocolError:
        return 0, 0
    if not isinstance(body, dict) or body.get("conc") != conc:
        return 0, 0
    boot, seq = body.get("boot"), body.get("seq")
    if type(boot) is int and type(seq) is int and 0 <= boot <= 0xFFFFFFFF and 0 <= seq <= U64:
        return boot, seq
    return 0, 0


class MqttIngest:
    """Runs an Ingestor on a broker: ``start()`` connects and subscribes in a thread, ``stop()`` ends it."""

    def __init__(self, ingestor, host="127.0.0.1", port=1883, share_group=SHARE_GROUP, client_id=None, site="+",
                 ca_file=None, username=None, password=None):
        """``ca_file``: connect over TLS, trusting that CA; ``username``/``password``: the broker's login."""
        self.ingestor = ingestor
        self.host = host
        self.port = port
        # share_group None: a plain subscription, for brokers without shared subscriptions
        share = "$share/%s/" % share_group if share_group else ""
        self.subscription = "%s%s/%s/+/batch" % (share, ingestor.prefix, site)
        # manual_ack: the broker gets its PUBACK only after the batch's commit
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "balans-central-%s" % uuid.uuid4().hex[:8],
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.handled = 0
        self.errors = []
        self._waiting = queue.Queue()
        self._worker = threading.Thread(target=self._store_waiting, daemon=True)

    def start(self, timeout=10.0):
        self._worker.start()
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            self.stop()
            raise RuntimeError("no subscription to %s on %s:%d within %.0f s"
                               % (self.subscription, self.host, self.port, timeout))
        return self

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()
        self._waiting.put(None)
        self._worker.join()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(self.subscription, qos=QOS)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if all(not rc.is_failure for rc in reason_codes):
            self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        self._waiting.put(msg)  # paho's network thread only queues; the worker stores

    def _store_waiting(self):
        """Store what is waiting, up to BATCHES_PER_COMMIT messages a transaction; then ack each."""
        while True:
            msgs = [self._waiting.get()]
            while msgs[-1] is not None and len(msgs) < BATCHES_PER_COMMIT:
                try:
                    msgs.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            stopping = msgs[-1] is None
            msgs = [m for m in msgs if m is not None]
            if msgs:
                self._store(msgs)
            if stopping:
                return

    def _store(self, msgs):
        try:
            acks = self.ingestor.handle_many([(m.topic, m.payload) for m in msgs])
        except Exception as e:  # a store failure: no ack at all, the broker and the agents resend
            self.errors.append(repr(e))
            return
        for msg, ack in zip(msgs, acks):
            self.handled += 1
            if ack.conc:
                self.client.publish(self.ingestor.ack_topic(msg.topic), self.ingestor.signed_ack(ack), qos=QOS)
            self.client.ack(msg.mid, msg.qos)
