"""COSE_Sign1 (RFC 9052, section 4.2) with Ed25519: the envelope of batches and acknowledgements.

CPython only. ``sign1`` wraps a payload; ``Sign1Verifier`` checks one against
its registered keys and returns the key id and payload. The protected header
(signed) carries alg = EdDSA (-8) and the key id.
"""

import io
from collections.abc import Mapping

import cbor2
from cryptography.exceptions import InvalidSignature

from protocol.errors import AuthError, ProtocolError

COSE_SIGN1_TAG = 18
ALG_EDDSA = -8
HDR_ALG = 1
HDR_KID = 4
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: bounds what a decoder of untrusted input allocates


def sign1(private_key, kid, payload):
    """Return the tagged COSE_Sign1 bytes of ``payload`` signed by an Ed25519 private key."""
    protected = cbor2.dumps({HDR_ALG: ALG_EDDSA, HDR_KID: bytes(kid)}, canonical=True)
    signature = private_key.sign(_sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


class Sign1Verifier:
    """Checks COSE_Sign1 messages against registered Ed25519 public keys, by key id."""

    def __init__(self):
        self._keys = {}

    def add_key(self, kid, public_key, owner=None):
        """Register ``public_key`` under ``kid``; ``owner`` is returned with each verified message."""
        self._keys[bytes(kid)] = (public_key, owner)

    def remove_key(self, kid):
        self._keys.pop(bytes(kid), None)

    def verify(self, data):
        """Return (kid, owner, payload bytes), or raise AuthError / ProtocolError."""
        protected_raw, kid, payload, signature = parse_sign1(data)
        entry = self._keys.get(kid)
        if entry is None:
            raise AuthError("unknown key id %r" % (kid,))
        public_key, owner = entry
        try:
            public_key.verify(signature, _sig_structure(protected_raw, payload))
        except InvalidSignature:
            raise AuthError("bad signature") from None
        return kid, owner, payload


def _sig_structure(protected_raw, payload):
    return cbor2.dumps(["Signature1", protected_raw, b"", payload])


def loads(data, what):
    """Decode exactly one CBOR item filling ``data``; raise only ProtocolError.

    Trailing bytes are refused: cbor2.loads would ignore them, and then two
    different messages would carry the same signature.
    """
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several types; we promise one
        raise ProtocolError("%s is not valid CBOR: %s" % (what, e)) from None
    if stream.tell() != len(data):
        raise ProtocolError("%s has %d bytes after its CBOR item" % (what, len(data) - stream.tell()))
    return value


def parse_sign1(data):
    """Split a COSE_Sign1 message into (protected bytes, kid, payload, signature) without verifying."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError("COSE message must be bytes of at most %d" % MAX_MESSAGE_BYTES)
    obj = loads(bytes(data), "COSE_Sign1 message")
    # Always tagged: RFC 9052 also allows an untagged form, but one signature must
    # match exactly one message, the one we sent
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise ProtocolError("not a tagged COSE_Sign1 message")
    obj = obj.value
    if not (isinstance(obj, (list, tuple)) and len(obj) == 4):
        raise ProtocolError("COSE_Sign1 must be an array of 4")
    protected_raw, unprotected, payload, signature = obj
    # Everything we send is in the signed header: an unprotected one could be changed unseen
    if not isinstance(protected_raw, bytes) or not isinstance(unprotected, Mapping) or unprotected:
        raise ProtocolError("COSE_Sign1 headers malformed or unprotected header not empty")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes) or len(signature) != 64:
        raise ProtocolError("COSE_Sign1 payload or signature malformed")
    protected = loads(protected_raw, "protected header") if protected_raw else {}
    if not isinstance(protected, Mapping) or protected.get(HDR_ALG) != ALG_EDDSA:
        raise ProtocolError("protected header must name alg EdDSA")
    kid = protected.get(HDR_KID)
    if not isinstance(kid, bytes):
        raise ProtocolError("protected header must carry a kid")
    return protected_raw, kid, payload, signature
