"""Bad input: every decoder meets random and mutated bytes, 10,000 examples each.

The promise (docs/protocol.md, "Errors"): a decoder returns a valid object or
raises ProtocolError (AuthError and ReplayError are subclasses), nothing else,
and returns promptly. Each test draws half random bytes, half valid encodings
after random edits (tests/protocol_strategies.py: flips, byte changes,
truncation, insertion, deletion, splices of two valid encodings).
"""

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import batch, frame, messages
from protocol.batch import AckVerifier, Signer, Verifier
from protocol.errors import ProtocolError
from tests.protocol_strategies import acks, any_message, bad_input, batches, frames

FUZZ = settings(max_examples=10000, deadline=None)
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

    @settings(max_examples=n, database=None, derandomize=True)
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


@FUZZ
@given(bad_input(FRAMES))
def test_parse_header(data):
    f = decoded(frame.parse_header, data)
    if f is not None:
        assert frame.T_DATA <= f.kind <= frame.T_OTA and 0 <= f.hops <= frame.MAX_HOPS
        assert frame.TAG_LEN <= len(f.payload) <= frame.PAYLOAD_MAX + frame.TAG_LEN


@FUZZ
@given(bad_input(FRAMES))
def test_open_frame(data):
    f = decoded(lambda d: frame.open_frame(d, KEY), data)
    if f is not None:  # only an authentic frame opens, and it seals back to the same bytes
        assert bytes(frame.seal_frame(f, KEY)) == data


@FUZZ
@given(bad_input(MESSAGES, max_random=40))
def test_message_decode(data):
    msg = decoded(messages.decode, data)
    if msg is not None:  # a decoded message is valid: it encodes back to the very same bytes
        assert msg.encode() == data


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


odd_payloads = st.builds(lambda choice, script: odd_payload(PAYLOADS, choice, script),
                         st.integers(0, len(PAYLOADS) - 1), st.binary(min_size=2, max_size=6))


@FUZZ
@given(st.one_of(bad_input(PAYLOADS, max_random=120), odd_payloads))
def test_decode_payload(data):
    b = decoded(batch.decode_payload, data)
    if b is not None:
        assert b.to_cbor()  # a decoded batch is valid: it encodes again


@FUZZ
@given(bad_input(SIGNED_BATCHES, max_random=200))
def test_batch_verify(data):
    b = decoded(VERIFIER.verify, data)
    if b is not None:
        assert b.conc == "c-f" and SIGNER.sign(b) == data  # only an original verifies


@FUZZ
@given(bad_input(SIGNED_ACKS, max_random=200))
def test_ack_verify(data):
    a = decoded(ACK_VERIFIER.verify, data)
    if a is not None:
        assert SIGNER.sign_ack(a) == data
