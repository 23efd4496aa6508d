"""AES-128-CCM (RFC 3610, NIST SP 800-38C) with an 8-byte tag and a 13-byte nonce.

Written on top of a bare AES block so that the same code runs on MicroPython
(``cryptolib`` offers only ECB there) and on CPython, where the tests check it
against ``cryptography``'s AESCCM. All work buffers are allocated once per key,
so sealing and opening a frame allocates only its output.
"""

from protocol.compat import BlockCipher, const
from protocol.errors import AuthError, ProtocolError

TAG_LEN = const(8)  # MIC-64, as IEEE 802.15.4 uses for its strongest CCM* level
NONCE_LEN = const(13)  # leaves L = 2 length bytes: messages up to 65535 bytes
_L = const(2)
_BLOCK = const(16)


class CCM:
    """Seal and open messages under one AES-128 key."""

    def __init__(self, key):
        if len(key) != 16:
            raise ProtocolError("AES-128 key must be 16 bytes")
        self._aes = BlockCipher(key)
        self._x = bytearray(_BLOCK)  # CBC-MAC chain value
        self._b = bytearray(_BLOCK)  # block being fed to the MAC
        self._ctr = bytearray(_BLOCK)  # counter block A_i
        self._s = bytearray(_BLOCK)  # key stream block S_i

    def _mac_block(self):
        x, b = self._x, self._b
        for i in range(_BLOCK):
            b[i] ^= x[i]
        self._aes.encrypt_block(b, x)

    def _mac_bytes(self, data, start, end):
        """Feed data[start:end] to the MAC, zero-padded to whole blocks."""
        b = self._b
        pos = start
        while pos < end:
            n = min(_BLOCK, end - pos)
            for i in range(n):
                b[i] = data[pos + i]
            for i in range(n, _BLOCK):
                b[i] = 0
            self._mac_block()
            pos += n

    def _tag(self, nonce, aad, msg):
        """CBC-MAC over B0, the encoded associated data and the message."""
        b = self._b
        x = self._x
        for i in range(_BLOCK):
            x[i] = 0
        b[0] = (0x40 if aad else 0) | (((TAG_LEN - 2) // 2) << 3) | (_L - 1)
        b[1:14] = nonce
        b[14] = len(msg) >> 8
        b[15] = len(msg) & 0xFF
        self._mac_block()
        if aad:
            # a < 2^16 - 2^8: two length bytes, then the data, padded together
            n = len(aad)
            b[0] = n >> 8
            b[1] = n & 0xFF
            first = min(n, _BLOCK - 2)
            for i in range(first):
                b[2 + i] = aad[i]
            for i in range(2 + first, _BLOCK):
                b[i] = 0
            self._mac_block()
            self._mac_bytes(aad, first, n)
        self._mac_bytes(msg, 0, len(msg))
        return x

    def _keystream(self, nonce, counter):
        a = self._ctr
        a[0] = _L - 1
        a[1:14] = nonce
        a[14] = counter >> 8
        a[15] = counter & 0xFF
        self._aes.encrypt_block(a, self._s)
        return self._s

    def _crypt(self, nonce, src, dst, n):
        """CTR mode from counter 1: dst[:n] = src[:n] xor S1 S2 ..."""
        pos = 0
        counter = 1
        while pos < n:
            s = self._keystream(nonce, counter)
            for i in range(min(_BLOCK, n - pos)):
                dst[pos + i] = src[pos + i] ^ s[i]
            pos += _BLOCK
            counter += 1

    def seal(self, nonce, aad, plaintext):
        """Return ciphertext followed by the 8-byte tag."""
        if len(nonce) != NONCE_LEN:
            raise ProtocolError("CCM nonce must be 13 bytes")
        n = len(plaintext)
        out = bytearray(n + TAG_LEN)
        t = self._tag(nonce, aad, plaintext)
        s0 = self._keystream(nonce, 0)
        for i in range(TAG_LEN):
            out[n + i] = t[i] ^ s0[i]
        self._crypt(nonce, plaintext, out, n)
        return out

    def open(self, nonce, aad, sealed):
        """Return the plaintext, or raise AuthError if the tag does not match."""
        if len(nonce) != NONCE_LEN:
            raise ProtocolError("CCM nonce must be 13 bytes")
        n = len(sealed) - TAG_LEN
        if n < 0:
            raise ProtocolError("sealed message shorter than its tag")
        plain = bytearray(n)
        self._crypt(nonce, sealed, plain, n)
        t = self._tag(nonce, aad, plain)
        s0 = self._keystream(nonce, 0)
        diff = 0
        for i in range(TAG_LEN):
            diff |= (t[i] ^ s0[i]) ^ sealed[n + i]
        if diff:
            raise AuthError("CCM tag mismatch")
        return plain
