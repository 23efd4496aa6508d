"""protocol.ccm against RFC 3610 and against OpenSSL (cryptography's AESCCM).

Both implementations: PortableCCM (what MicroPython runs) and OpenSSLCCM (what
CCM is on CPython) must agree with the references and behave alike on errors.
"""

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given
from hypothesis import strategies as st

from protocol.ccm import CCM, NONCE_LEN, TAG_LEN, OpenSSLCCM, PortableCCM
from protocol.errors import AuthError, ProtocolError
from tests.protocol_strategies import examples_settings

IMPLEMENTATIONS = pytest.mark.parametrize("impl", [PortableCCM, OpenSSLCCM])
RFC3610_KEY = bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")
# RFC 3610 section 8, packet vectors #1-#3: M = 8, L = 2, exactly our parameters.
# (nonce, 8 cleartext header bytes = associated data, payload, ciphertext and tag)
RFC3610 = [
    ("00000003020100a0a1a2a3a4a5", "0001020304050607", "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
     "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0"),
    ("00000004030201a0a1a2a3a4a5", "0001020304050607", "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3ba091d56e10400916"),
    ("00000005040302a0a1a2a3a4a5", "0001020304050607", "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
     "51b1e5f44a197d1da46b0f8e2d282ae871e838bb64da8596574adaa76fbd9fb0c5"),
]


@IMPLEMENTATIONS
@pytest.mark.parametrize("nonce, aad, plain, sealed", RFC3610)
def test_rfc3610_packet_vectors(impl, nonce, aad, plain, sealed):
    ccm = impl(RFC3610_KEY)
    nonce, aad, plain, sealed = map(bytes.fromhex, (nonce, aad, plain, sealed))
    assert bytes(ccm.seal(nonce, aad, plain)) == sealed
    assert bytes(ccm.open(nonce, aad, sealed)) == plain


keys = st.binary(min_size=16, max_size=16)
nonces = st.binary(min_size=NONCE_LEN, max_size=NONCE_LEN)


@IMPLEMENTATIONS
@examples_settings(400)
@given(keys, nonces, st.binary(max_size=100), st.binary(max_size=100))
def test_seal_equals_openssl_and_opens(impl, key, nonce, aad, plain):
    reference = AESCCM(key, tag_length=TAG_LEN)
    sealed = impl(key).seal(nonce, aad, plain)
    assert bytes(sealed) == reference.encrypt(nonce, plain, aad)
    assert bytes(impl(key).open(nonce, aad, sealed)) == plain


@IMPLEMENTATIONS
@examples_settings(400)
@given(keys, nonces, st.binary(max_size=100), st.binary(max_size=100))
def test_opens_what_openssl_sealed(impl, key, nonce, aad, plain):
    sealed = AESCCM(key, tag_length=TAG_LEN).encrypt(nonce, plain, aad)
    assert bytes(impl(key).open(nonce, aad, sealed)) == plain


@IMPLEMENTATIONS
@examples_settings(300)
@given(keys, nonces, st.binary(max_size=40), st.binary(min_size=1, max_size=60), st.data())
def test_any_change_fails_like_openssl(impl, key, nonce, aad, plain, data):
    sealed = bytearray(AESCCM(key, tag_length=TAG_LEN).encrypt(nonce, plain, aad))
    where = data.draw(st.integers(0, len(sealed) - 1))
    sealed[where] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(InvalidTag):
        AESCCM(key, tag_length=TAG_LEN).decrypt(nonce, bytes(sealed), aad)
    with pytest.raises(AuthError):
        impl(key).open(nonce, aad, sealed)


@IMPLEMENTATIONS
def test_failed_open_leaves_no_plaintext_behind(impl):
    ccm = impl(RFC3610_KEY)
    nonce, aad = bytes(13), b"hdr"
    sealed = bytearray(ccm.seal(nonce, aad, b"secret reading 1234"))
    sealed[-1] ^= 1
    out = bytearray(64)
    with pytest.raises(AuthError):
        ccm.open_into(nonce, aad, sealed, out)
    assert out == bytearray(64)


@IMPLEMENTATIONS
def test_seal_into_writes_at_offset_and_nowhere_else(impl):
    ccm = impl(RFC3610_KEY)
    nonce, aad, plain = bytes(range(13)), b"a", b"plaintext"
    out = bytearray(b"\xaa" * 40)
    n = ccm.seal_into(nonce, aad, plain, out, 5)
    assert n == len(plain) + TAG_LEN
    assert out[5:5 + n] == ccm.seal(nonce, aad, plain)
    assert out[:5] == b"\xaa" * 5 and out[5 + n:] == b"\xaa" * (40 - 5 - n)


@IMPLEMENTATIONS
def test_bad_parameters_are_protocol_errors(impl):
    ccm = impl(RFC3610_KEY)
    with pytest.raises(ProtocolError):
        impl(b"short")
    with pytest.raises(ProtocolError):
        ccm.seal(bytes(12), b"", b"x")
    with pytest.raises(ProtocolError):
        ccm.open(bytes(13), b"", bytes(TAG_LEN - 1))
    with pytest.raises(ProtocolError):
        ccm.seal_into(bytes(13), b"", b"abc", bytearray(10))
    with pytest.raises(ProtocolError):
        ccm.seal(bytes(13), bytes(0xFF00), b"")


def test_cpython_uses_openssl():
    assert CCM is OpenSSLCCM  # the simulator's speed depends on it; MicroPython gets PortableCCM


@IMPLEMENTATIONS
def test_opening_the_same_bytes_again_gives_the_same_answer(impl):
    ccm = impl(RFC3610_KEY)  # OpenSSLCCM answers repeats from memory: a forgery must stay one
    nonce, aad = bytes(range(13)), b"hdr"
    sealed = bytes(ccm.seal(nonce, aad, b"beacon"))
    forged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for _ in range(2):
        assert bytes(ccm.open(nonce, aad, sealed)) == b"beacon"
        out = bytearray(b"\xaa" * 6)
        with pytest.raises(AuthError):
            ccm.open_into(nonce, aad, forged, out)
        assert out == bytearray(6)
        with pytest.raises(AuthError):
            ccm.open(nonce, b"hdR", sealed)
