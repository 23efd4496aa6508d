"""Bad input: every decoder meets random and mutated bytes, 10,000 examples each.

The promise (docs/protocol.md, "Errors"): a decoder returns a valid object or
raises ProtocolError (AuthError and ReplayError are subclasses), nothing else,
and returns promptly. The decoders: radio frames, messages, batches and acks, and
the serial link's bodies (``link.unpack``, ``link.records``) and byte stream
(``link.Reader``). Each of the 10,000 examples feeds every decoder one input:
random bytes, or one of its valid encodings after random edits
(tests/protocol_strategies.py: flips, byte changes, truncation, insertion,
deletion, splices of two valid encodings), or, for the CBOR decoders, a valid
payload with schema values swapped for odd ones (signed, for the verifiers, so
that the checks behind the signature are reached too). One example drives all
the decoders because hypothesis's own cost per example dominates: separate
tests would take many times as long for the same inputs.
"""

import struct

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import batch, frame, link, messages
from protocol.batch import AckVerifier, Signer, Verifier
from protocol.cose import sign1
from protocol.errors import ProtocolError
from tests.protocol_strategies import acks, any_message, apply_edits, batches, examples_settings, frames

FUZZ = examples_settings(10000)  # settings(max_examples=10000, deadline=None), too_slow off
KEY = bytes(range(16))
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)


def decoded(decoder, data):
    """decoder(data), or None when it raised ProtocolError; any other exception fails the test."""
    try:
        return decoder(data)
    except ProtocolError:
        return None


def examples(strategy, n):
    """n fixed valid examples of strategy (drawn once, so that every run mutates the same samples)."""
    out = []

    @settings(max_examples=n, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        out.append(value)

    collect()
    return out[:n]


FRAMES = [bytes(frame.seal_frame(f, KEY)) for f in examples(frames(), 12)]
MESSAGES = [m.encode() for m in examples(any_message, 40)]
SIGNER = Signer(SIGNING_KEY, b"kid-f")
BATCHES = examples(batches(conc="c-f", max_records=4), 6)
SIGNED_BATCHES = [SIGNER.sign(b) for b in BATCHES]
PAYLOADS = [b.to_cbor() for b in BATCHES]
SIGNED_ACKS = [SIGNER.sign_ack(a) for a in examples(acks(), 6)]

VERIFIER = Verifier()
VERIFIER.add_key(b"kid-f", SIGNING_KEY.public_key(), "c-f")
ACK_VERIFIER = AckVerifier()
ACK_VERIFIER.add_key(b"kid-f", SIGNING_KEY.public_key())


# Valid payloads with values swapped for odd ones: reaches the schema checks behind the CBOR parser
ODD_VALUES = (None, True, False, -1, 0, 2, 1 << 32, 1 << 40, 1 << 63, 1 << 64, -(1 << 64), 1.5, float("nan"),
              "", "c" * 65, "1-0:1.8.5", "1-0:1.8", "x.y", b"", b"c-f", [], [[]], [None] * 4, {}, {"v": 1},
              cbor2.CBORTag(1, 0), cbor2.CBORTag(99, [1]))
ODD_ENCODED = [cbor2.dumps(v) for v in ODD_VALUES]  # decoded afresh for each use: no shared objects


def _slots(value, out):
    """Every (container, key) inside value, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((value, key))
        _slots(child, out)
    return out


def odd_payload(bodies, choice, script):
    body = cbor2.loads(bodies[choice % len(bodies)])
    for i in range(0, len(script) - 1, 2):
        slots = _slots(body, [])
        if not slots:
            break
        container, key = slots[script[i] % len(slots)]
        if script[i + 1] < 16 and isinstance(container, dict):
            del container[key]
        else:
            container[key] = cbor2.loads(ODD_ENCODED[script[i + 1] % len(ODD_ENCODED)])
    return cbor2.dumps(body)



READING = struct.pack(link.READING_FMT, link.K_READING, 0x2A, 1, 0x01, 1764316800, 123456)
EVENT = struct.pack(link.RECORD_FMT, link.K_EVENT, 0x2A, 0xFF, 5, 1764316800, -3)
LINK_BODIES = [link.pack(link.L_HELLO, 7, 100), link.pack(link.L_RECORDS, 7, 100, 2, tail=READING + EVENT),
               link.pack(link.L_ACK, 7, 102, 16), link.pack(link.L_TIME, 1764316800),
               link.pack(link.L_CMD, 9, 0x2A, tail=MESSAGES[0]), link.pack(link.L_RESULT, 9, 0x2A, 0, 0),
               link.pack(link.L_MODULE, 0x2A, 1764316800, 150, -80, 3, 0), link.pack(link.L_STATS, 1, 2, 3, 4, 5),
               bytes([link.FLAG, link.ESC]) * 3]
LINK_STREAMS = [b"".join(link.encode(b) for b in LINK_BODIES[i:i + 3]) for i in range(0, len(LINK_BODIES), 3)]


def link_body(data):
    ftype, fields, tail = link.unpack(data)
    return ftype, fields, tail, list(link.records(tail)) if ftype == link.L_RECORDS else None


def link_stream(data):
    reader = link.Reader()
    return reader, reader.feed(data)


def open_with_key(data):
    return frame.open_frame(data, KEY)


def resealed(f):
    """The wire bytes of an opened frame: sealed again, with its per-hop link flags."""
    wire = frame.seal_frame(f, KEY)
    frame.set_link_flags(wire, f.link_flags)
    return bytes(wire)


def sane_header(f, data):
    return (frame.T_DATA <= f.kind <= frame.T_OTA and 0 <= f.hops <= frame.MAX_HOPS
            and frame.TAG_LEN <= len(f.payload) <= frame.PAYLOAD_MAX + frame.TAG_LEN)


def odd_signed(payloads):
    return lambda choice, script: sign1(SIGNING_KEY, b"kid-f", odd_payload(payloads, choice, script))


ACK_PAYLOADS = [cbor2.loads(a).value[2] for a in SIGNED_ACKS]

# (decoder, its valid encodings, longest random input, odd-value inputs or None,
#  what an accepted input must satisfy: the decoded object is valid and means that input)
DECODERS = [
    (frame.parse_header, FRAMES, 80, None, sane_header),
    (open_with_key, FRAMES, 80, None, lambda f, data: resealed(f) == data),
    (messages.decode, MESSAGES, 40, None, lambda m, data: m.encode() == data),
    (batch.decode_payload, PAYLOADS, 120, lambda c, s: odd_payload(PAYLOADS, c, s),
     lambda b, data: batch.decode_payload(b.to_cbor()).key == b.key),
    (VERIFIER.verify, SIGNED_BATCHES, 200, odd_signed(PAYLOADS),
     lambda b, data: b.conc == "c-f" and batch.decode_payload(b.to_cbor()).key == b.key),
    (ACK_VERIFIER.verify, SIGNED_ACKS, 200, odd_signed(ACK_PAYLOADS),
     lambda a, data: a.status in batch.ACK_STATUSES and a.to_cbor()),
    (link_body, LINK_BODIES[:-1], 255, None, lambda u, data: link.pack(u[0], *u[1], tail=u[2]) == data),
    (link_stream, LINK_STREAMS, 200, None,
     lambda r, data: r[0].good_frames == len(r[1]) and all(len(b) <= link.BODY_MAX for b in r[1])),
]


@FUZZ
@given(st.sampled_from(("random", "mutated", "odd values")), st.binary(max_size=200), st.integers(0, 255),
       st.binary(min_size=3, max_size=12))
def test_every_decoder_returns_a_valid_object_or_raises_protocol_error(mode, noise, choice, script):
    for decode, samples, max_random, odd, is_valid in DECODERS:
        if mode == "random":
            data = noise[:max_random]
        elif mode == "odd values" and odd is not None:
            data = odd(choice, script)
        else:
            data = apply_edits(samples, choice, script)
        result = decoded(decode, data)
        assert result is None or is_valid(result, data), (decode, data)
