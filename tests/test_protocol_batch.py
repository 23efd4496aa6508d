"""Signed batches and acknowledgements: COSE_Sign1 with Ed25519, checked by pycose too."""

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from pycose.keys import OKPKey
from pycose.messages import Sign1Message

from protocol import obis
from protocol.batch import Ack, AckVerifier, Batch, Record, Signer, Verifier, decode_payload
from protocol.cose import sign1
from protocol.errors import AuthError, ProtocolError
from tests.protocol_strategies import acks, batches, examples_settings


def private_key(seed):
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def raw_public(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


CONC_A, CONC_B, CENTRAL = private_key(1), private_key(2), private_key(3)
SIGNER_A = Signer(CONC_A, b"kid-a")
SIGNER_B = Signer(CONC_B, b"kid-b")
CENTRAL_SIGNER = Signer(CENTRAL, b"central-1")


def verifier():
    v = Verifier()
    v.add_key(b"kid-a", CONC_A.public_key(), "c-a")
    v.add_key(b"kid-b", CONC_B.public_key(), "c-b")
    return v


def ack_verifier():
    v = AckVerifier()
    v.add_key(b"central-1", CENTRAL.public_key())
    return v


SMALL = Batch("c-a", 7, 1234, [Record("002a.0", 1700000000, obis.code("electricity", 0), 123456),
                               Record("002a.0", 1700000000, obis.code("electricity", 1), 100000)],
              [["002a.0", 1700000100, 1, 0]])


def same_batch(a, b):
    return (a.key, a.records, a.events) == (b.key, b.records, b.events)


@examples_settings(100)
@given(batches(conc="c-a"))
def test_round_trip(batch):
    got = verifier().verify(SIGNER_A.sign(batch))
    assert same_batch(got, batch)
    assert same_batch(decode_payload(batch.to_cbor()), batch)


@examples_settings(50)
@given(batches(conc="c-a"))
def test_pycose_verifies_our_batches(batch):
    data = SIGNER_A.sign(batch)
    msg = Sign1Message.decode(data)
    msg.key = OKPKey(crv="Ed25519", x=raw_public(CONC_A))
    assert msg.verify_signature()
    assert msg.phdr and msg.uhdr == {}
    assert same_batch(decode_payload(msg.payload), batch)
    msg.key = OKPKey(crv="Ed25519", x=raw_public(CONC_B))
    assert not msg.verify_signature()


def test_every_changed_byte_is_refused():
    data = SIGNER_A.sign(SMALL)
    v = verifier()
    assert same_batch(v.verify(data), SMALL)
    for pos in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= mask
            with pytest.raises(ProtocolError):
                v.verify(bytes(bad))


def test_truncated_or_extended_is_refused():
    data = SIGNER_A.sign(SMALL)
    v = verifier()
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            v.verify(data[:cut])
    with pytest.raises(ProtocolError):
        v.verify(data + b"\x00")  # cbor2.loads alone would ignore a trailing byte


def test_unknown_kid_is_refused():
    with pytest.raises(AuthError):
        verifier().verify(Signer(CONC_A, b"kid-unknown").sign(SMALL))


def test_a_concentrator_cannot_sign_for_another():
    as_b = Batch("c-b", SMALL.boot, SMALL.seq, SMALL.records)
    with pytest.raises(AuthError):
        verifier().verify(SIGNER_A.sign(as_b))  # A's own key, B's name
    with pytest.raises(AuthError):
        verifier().verify(Signer(CONC_B, b"kid-a").sign(SMALL))  # B's key under A's kid
    assert verifier().verify(SIGNER_B.sign(as_b)).conc == "c-b"


def test_an_unprotected_header_is_refused():
    good = cbor2.loads(SIGNER_A.sign(SMALL))
    protected, _, payload, signature = good.value
    smuggled = cbor2.dumps(cbor2.CBORTag(18, [protected, {4: b"kid-b"}, payload, signature]))
    with pytest.raises(ProtocolError):
        verifier().verify(smuggled)


@examples_settings(100)
@given(acks())
def test_ack_round_trip(ack):
    got = ack_verifier().verify(CENTRAL_SIGNER.sign_ack(ack))
    assert (got.key, got.status, got.reason) == (ack.key, ack.status, ack.reason)


def test_forged_acks_are_refused():
    ack = Ack("c-a", 7, 1234, "stored")
    with pytest.raises(AuthError):  # anyone on the broker, using central's kid
        ack_verifier().verify(Signer(CONC_A, b"central-1").sign_ack(ack))
    with pytest.raises(AuthError):  # a concentrator's key is not central's
        ack_verifier().verify(SIGNER_A.sign_ack(ack))
    with pytest.raises(ProtocolError):  # a batch is not an ack, even when central signed it
        ack_verifier().verify(CENTRAL_SIGNER.sign(SMALL))
    data = CENTRAL_SIGNER.sign_ack(ack)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(ProtocolError):
            ack_verifier().verify(bytes(bad))


@pytest.mark.parametrize("body", [
    {"v": 2, "conc": "c", "boot": 0, "seq": 0, "records": []},
    {"v": True, "conc": "c", "boot": 0, "seq": 0, "records": []},
    {"v": 1, "conc": "", "boot": 0, "seq": 0, "records": []},
    {"v": 1, "conc": "c" * 65, "boot": 0, "seq": 0, "records": []},
    {"v": 1, "conc": "c", "boot": 1 << 32, "seq": 0, "records": []},
    {"v": 1, "conc": "c", "boot": 0, "seq": 1 << 64, "records": []},
    {"v": 1, "conc": "c", "boot": 0, "seq": -1, "records": []},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [], "extra": 1},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [["m", 0, "1-0:1.8.0"]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [["m", 0, "1-0:1.8.5", 1]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [["m", 0, "1-0:1.8.0", -1]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [["m", 0, "1-0:1.8.0", 1.5]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [["m", 1 << 40, "1-0:1.8.0", 1]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [[b"m", 0, "1-0:1.8.0", 1]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [], "events": [["m", 0, 256, 0]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [], "events": [["m", 0, 1, 1 << 63]]},
    {"v": 1, "conc": "c", "boot": 0, "seq": 0, "records": [], "events": {}},
    [1, 2, 3],
], ids=range(19))
def test_invalid_payloads_are_protocol_errors(body):
    with pytest.raises(ProtocolError):
        decode_payload(cbor2.dumps(body))
    with pytest.raises(ProtocolError):  # even when properly signed by a known key
        verifier().verify(sign1(CONC_A, b"kid-a", cbor2.dumps(body)))


def test_a_batch_that_cannot_be_encoded_is_refused_before_signing():
    with pytest.raises(ProtocolError):
        SIGNER_A.sign(Batch("c-a", 0, 0, [Record("m", 0, "9.9.9", 1)]))
    with pytest.raises(ProtocolError):
        CENTRAL_SIGNER.sign_ack(Ack("c-a", 0, 0, "lost"))
