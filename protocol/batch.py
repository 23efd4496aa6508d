"""Signed batches and their acknowledgements, as COSE_Sign1 (RFC 9052) with Ed25519.

CPython only (the edge agent signs batches, central verifies them and signs
acknowledgements back). A batch payload is a CBOR map::

    {"v": 1,                      format version
     "conc": "c-0001",            concentrator id
     "boot": 7,                   the concentrator's boot counter
     "seq": 1234,                 batch sequence, 0..2**64-1, never reused for one (conc, boot)
     "records": [[meter_id, ts, register, value], ...],
     "events":  [[meter_id, ts, code, value], ...]}   optional

``ts`` is unix seconds, ``register`` an OBIS-style code (``protocol.obis``),
``value`` a non-negative integer register reading in pulses. (conc, boot, seq)
is the batch's dedup key: central stores a batch at most once.

An acknowledgement payload is ``{"v": 1, "conc", "boot", "seq", "status", "reason"}``
with status "stored" (committed now), "duplicate" (committed before) or
"rejected" (quarantined: will never be stored; reason says why). It is signed by
central's key so that nobody on the broker can make an agent drop unstored data.
"""

import cbor2

from protocol import obis
from protocol.cose import Sign1Verifier, loads, sign1
from protocol.errors import AuthError, ProtocolError

VERSION = 1
MAX_RECORDS = 20000  # a day of hourly totals and tariff registers of 720 meters fits with room
MAX_EVENTS = 20000
MAX_ID_CHARS = 64  # concentrator and meter ids
U32 = (1 << 32) - 1
U40 = (1 << 40) - 1  # timestamps: unix seconds past 2106 without a format change
U64 = (1 << 64) - 1
I64 = 1 << 63  # event values are signed 64-bit, what every store can hold
REGISTER_CODES = frozenset(obis.code(r, t) for r in obis.RESOURCES for t in obis.TARIFFS)
ACK_STATUSES = ("stored", "duplicate", "rejected")


class Record:
    """One register reading: ``meter_id`` had ``value`` pulses on ``register`` at ``ts``."""

    __slots__ = ("meter_id", "ts", "register", "value")

    def __init__(self, meter_id, ts, register, value):
        self.meter_id = meter_id
        self.ts = ts
        self.register = register
        self.value = value

    def as_list(self):
        return [self.meter_id, self.ts, self.register, self.value]

    def __eq__(self, other):
        return isinstance(other, Record) and self.as_list() == other.as_list()

    def __hash__(self):
        return hash(tuple(self.as_list()))

    def __repr__(self):
        return "Record(%r, %d, %r, %d)" % tuple(self.as_list())


class Batch:
    """The content of one signed batch."""

    def __init__(self, conc, boot, seq, records, events=()):
        self.conc = conc
        self.boot = boot
        self.seq = seq
        self.records = list(records)
        self.events = [list(e) for e in events]

    @property
    def key(self):
        """The dedup key: (concentrator id, boot counter, sequence)."""
        return (self.conc, self.boot, self.seq)

    def to_cbor(self):
        body = {"v": VERSION, "conc": self.conc, "boot": self.boot, "seq": self.seq,
                "records": [r.as_list() for r in self.records]}
        if self.events:
            body["events"] = self.events
        _check_payload(body)
        return cbor2.dumps(body, canonical=True)


class Signer:
    """Signs batches (an agent) or acknowledgements (central) with one Ed25519 key named ``kid``."""

    def __init__(self, private_key, kid):
        self._key = private_key
        self.kid = bytes(kid)

    def sign(self, batch):
        return sign1(self._key, self.kid, batch.to_cbor())

    def sign_ack(self, ack):
        return sign1(self._key, self.kid, ack.to_cbor())


class Verifier:
    """Verifies batches against registered concentrator keys (kid -> key, concentrator id)."""

    def __init__(self):
        self._cose = Sign1Verifier()

    def add_key(self, kid, public_key, conc):
        self._cose.add_key(kid, public_key, conc)

    def verify(self, data):
        """Return the Batch, or raise AuthError (signature, key) or ProtocolError (format)."""
        kid, conc, payload = self._cose.verify(data)
        batch = decode_payload(payload)
        if batch.conc != conc:
            raise AuthError("key %r belongs to %r, not %r" % (kid, conc, batch.conc))
        return batch


class Ack:
    """Central's answer to one batch, named by the batch's dedup key."""

    def __init__(self, conc, boot, seq, status, reason=""):
        self.conc = conc
        self.boot = boot
        self.seq = seq
        self.status = status
        self.reason = reason

    @property
    def key(self):
        return (self.conc, self.boot, self.seq)

    def to_cbor(self):
        body = {"v": VERSION, "conc": self.conc, "boot": self.boot, "seq": self.seq,
                "status": self.status, "reason": self.reason}
        _check_ack(body)
        return cbor2.dumps(body, canonical=True)


class AckVerifier:
    """Verifies acknowledgements against central's public key(s)."""

    def __init__(self):
        self._cose = Sign1Verifier()

    def add_key(self, kid, public_key):
        self._cose.add_key(kid, public_key)

    def verify(self, data):
        """Return the Ack, or raise AuthError / ProtocolError."""
        _, _, payload = self._cose.verify(data)
        body = loads(payload, "ack payload")
        _check_ack(body)
        return Ack(body["conc"], body["boot"], body["seq"], body["status"], body["reason"])


def decode_payload(payload: bytes) -> Batch:
    body = loads(payload, "batch payload")
    _check_payload(body)
    records = [Record(*r) for r in body["records"]]
    return Batch(body["conc"], body["boot"], body["seq"], records, body.get("events", ()))


def _is_uint(v, limit=U64):
    return type(v) is int and 0 <= v <= limit


def _is_id(v):
    return type(v) is str and 0 < len(v) <= MAX_ID_CHARS


def _check_payload(body):
    if not isinstance(body, dict) or type(body.get("v")) is not int or body["v"] != VERSION:
        raise ProtocolError("batch payload must be a map with v=%d" % VERSION)
    unknown = set(body) - {"v", "conc", "boot", "seq", "records", "events"}
    if unknown:
        raise ProtocolError("unknown batch fields %s" % sorted(map(repr, unknown))[:4])
    if not _is_id(body.get("conc")):
        raise ProtocolError("conc must be a text id of 1..%d characters" % MAX_ID_CHARS)
    if not _is_uint(body.get("boot"), U32) or not _is_uint(body.get("seq")):
        raise ProtocolError("boot must be u32 and seq u64")
    records = body.get("records")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise ProtocolError("records must be a list of at most %d" % MAX_RECORDS)
    for i, r in enumerate(records):
        if not (type(r) is list and len(r) == 4 and _is_id(r[0]) and _is_uint(r[1], U40)
                and type(r[2]) is str and r[2] in REGISTER_CODES and _is_uint(r[3])):
            raise ProtocolError("record %d is not [meter_id, ts, register code, value]" % i)
    events = body.get("events", [])
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise ProtocolError("events must be a list of at most %d" % MAX_EVENTS)
    for i, e in enumerate(events):
        if not (isinstance(e, list) and len(e) == 4 and _is_id(e[0]) and _is_uint(e[1], U40)
                and _is_uint(e[2], 255) and type(e[3]) is int and -I64 <= e[3] < I64):
            raise ProtocolError("event %d is not [meter_id, ts, code, value]" % i)


def _check_ack(body):
    if not isinstance(body, dict) or set(body) != {"v", "conc", "boot", "seq", "status", "reason"}:
        raise ProtocolError("ack must be a map of v, conc, boot, seq, status, reason")
    if type(body["v"]) is not int or body["v"] != VERSION:
        raise ProtocolError("ack version must be %d" % VERSION)
    if not _is_id(body["conc"]) or not _is_uint(body["boot"], U32) or not _is_uint(body["seq"]):
        raise ProtocolError("ack key malformed")
    if body["status"] not in ACK_STATUSES or type(body["reason"]) is not str:
        raise ProtocolError("ack status must be one of %s" % (ACK_STATUSES,))
