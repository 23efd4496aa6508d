"""The committed vectors on CPython: the CPython-only ones (batches, acks), and an
independent check of the rest. tests/mpy/test_protocol_vectors.py runs the shared
ones on both interpreters."""

import json

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from protocol import messages
from protocol.batch import Ack, AckVerifier, Batch, Record, Signer, Verifier
from protocol.ccm import TAG_LEN
from balans.toolchain import REPO

VECTORS = json.loads((REPO / "tests" / "vectors" / "protocol.json").read_text())
CPYTHON_ONLY = VECTORS["cpython_only"]


def test_ccm_vectors_agree_with_openssl():
    for v in VECTORS["ccm"]:
        reference = AESCCM(bytes.fromhex(v["key"]), tag_length=TAG_LEN)
        sealed = reference.encrypt(bytes.fromhex(v["nonce"]), bytes.fromhex(v["plaintext"]), bytes.fromhex(v["aad"]))
        assert sealed.hex() == v["sealed"], v["name"]


def test_every_message_type_has_a_vector():
    assert sorted(v["type"] for v in VECTORS["messages"]) == sorted(m.__name__ for m in messages.MESSAGES)


def test_signed_batch_vector():
    v = CPYTHON_ONLY["batch"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["seed"]))
    batch = Batch(v["conc"], v["boot"], v["seq"], [Record(*r) for r in v["records"]], v["events"])
    assert batch.to_cbor().hex() == v["payload"]
    assert Signer(key, v["kid"].encode()).sign(batch).hex() == v["cose_sign1"]  # Ed25519 is deterministic
    verifier = Verifier()
    verifier.add_key(v["kid"].encode(), key.public_key(), v["conc"])
    got = verifier.verify(bytes.fromhex(v["cose_sign1"]))
    assert (got.key, [r.as_list() for r in got.records], got.events) == (
        (v["conc"], v["boot"], v["seq"]), v["records"], v["events"])
    assert cbor2.loads(bytes.fromhex(v["payload"]))["records"] == v["records"]


def test_signed_ack_vector():
    v = CPYTHON_ONLY["ack"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["seed"]))
    ack = Ack(v["conc"], v["boot"], v["seq"], v["status"], v["reason"])
    assert ack.to_cbor().hex() == v["payload"]
    assert Signer(key, v["kid"].encode()).sign_ack(ack).hex() == v["cose_sign1"]
    verifier = AckVerifier()
    verifier.add_key(v["kid"].encode(), key.public_key())
    got = verifier.verify(bytes.fromhex(v["cose_sign1"]))
    assert (got.key, got.status, got.reason) == ((v["conc"], v["boot"], v["seq"]), v["status"], v["reason"])
