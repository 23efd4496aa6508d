"""AES-128-CCM (RFC 3610, NIST SP 800-38C) with an 8-byte tag and a 13-byte nonce.

Written on top of a bare AES block so that the same code runs on MicroPython
(``cryptolib`` offers only ECB there) and on CPython, where the tests check it
against ``cryptography``'s AESCCM. All work buffers are allocated once per key:
``seal_into`` and ``open_into`` allocate nothing on MicroPython (tests/mpy proves
it); ``seal`` and ``open`` allocate only their output.

``CCM`` is that block-built ``PortableCCM`` on MicroPython; on CPython it is
``OpenSSLCCM``, the same interface with each message sealed or opened by one
OpenSSL call, about 30 times faster (the simulator runs hundreds of stations).
The tests hold both to RFC 3610 and to each other, byte for byte.
"""

from protocol.compat import AESCCM, BlockCipher, InvalidTag, const
from protocol.errors import AuthError, ProtocolError

TAG_LEN = const(8)  # MIC-64, as IEEE 802.15.4 uses for its strongest CCM* level
NONCE_LEN = const(13)  # leaves L = 2 length bytes: messages up to 65535 bytes
_L = const(2)
_BLOCK = const(16)
MSG_MAX = const(0xFFFF)  # what L = 2 length bytes can count
AAD_MAX = const(0xFEFF)  # longer associated data needs a 6-byte length encoding we never use


class PortableCCM:
    """Seal and open messages under one AES-128 key, on a bare AES block."""

    def __init__(self, key):
        if len(key) != 16:
            raise ProtocolError("AES-128 key must be 16 bytes")
        self._aes = BlockCipher(key)
        self._x = bytearray(_BLOCK)  # CBC-MAC chain value
        self._ctr = bytearray(_BLOCK)  # counter block A_i
        self._s = bytearray(_BLOCK)  # key stream block S_i

    # The MAC xors each block into the chain value and encrypts that in place: a block's zero padding
    # then costs nothing, and a byte of input is one Python-level step (a separate block buffer, filled,
    # padded and then xored, took about four times as many: sealing an ACK 18 -> 10 us on the unix port).
    def _mac_bytes(self, data, start, end, at=0):
        """Feed data[start:end] to the MAC from byte ``at`` of the current block, zero-padded to its end."""
        x, aes = self._x, self._aes
        i = at
        for pos in range(start, end):
            x[i] ^= data[pos]
            i += 1
            if i == _BLOCK:
                aes.encrypt_block(x, x)
                i = 0
        if i:
            aes.encrypt_block(x, x)

    def _tag(self, nonce, aad, msg, n):
        """CBC-MAC over B0, the encoded associated data and msg[:n]."""
        x = self._x
        x[0] = (0x40 if aad else 0) | (((TAG_LEN - 2) // 2) << 3) | (_L - 1)
        x[1:14] = nonce
        x[14] = n >> 8
        x[15] = n & 0xFF
        self._aes.encrypt_block(x, x)
        if aad:
            # a < 2^16 - 2^8: two length bytes, then the data, padded together
            a = len(aad)
            x[0] ^= a >> 8
            x[1] ^= a & 0xFF
            self._mac_bytes(aad, 0, a, 2)
        self._mac_bytes(msg, 0, n)
        return x

    def _keystream(self, nonce, counter):
        a = self._ctr
        a[0] = _L - 1
        a[1:14] = nonce
        a[14] = counter >> 8
        a[15] = counter & 0xFF
        self._aes.encrypt_block(a, self._s)
        return self._s

    def _crypt(self, nonce, src, src_off, dst, dst_off, n):
        """CTR mode from counter 1: n bytes of src from src_off, xor S1 S2 ..., to dst at dst_off."""
        pos = 0
        counter = 1
        while pos < n:
            s = self._keystream(nonce, counter)
            for i in range(min(_BLOCK, n - pos)):
                dst[dst_off + pos + i] = src[src_off + pos + i] ^ s[i]
            pos += _BLOCK
            counter += 1

    def _check(self, nonce, aad, n):
        if len(nonce) != NONCE_LEN:
            raise ProtocolError("CCM nonce must be 13 bytes")
        if len(aad) > AAD_MAX or n > MSG_MAX:
            raise ProtocolError("CCM message or associated data too long")

    def _check_seal(self, nonce, aad, plaintext, out, offset):
        """The plaintext length, once the arguments of a seal are known to be good."""
        n = len(plaintext)
        self._check(nonce, aad, n)
        if len(out) < offset + n + TAG_LEN:
            raise ProtocolError("CCM output buffer too small")
        return n

    def _check_open(self, nonce, aad, sealed, out):
        """The plaintext length, once the arguments of an open are known to be good."""
        n = len(sealed) - TAG_LEN
        if n < 0:
            raise ProtocolError("sealed message shorter than its tag")
        self._check(nonce, aad, n)
        if len(out) < n:
            raise ProtocolError("CCM output buffer too small")
        return n

    def seal_into(self, nonce, aad, plaintext, out, offset=0):
        """Write ciphertext then the 8-byte tag into ``out`` at ``offset``; return their length."""
        n = self._check_seal(nonce, aad, plaintext, out, offset)
        t = self._tag(nonce, aad, plaintext, n)
        s0 = self._keystream(nonce, 0)
        for i in range(TAG_LEN):
            out[offset + n + i] = t[i] ^ s0[i]
        self._crypt(nonce, plaintext, 0, out, offset, n)
        return n + TAG_LEN

    def open_into(self, nonce, aad, sealed, out):
        """Decrypt ``sealed`` (ciphertext and tag) into ``out``; return the plaintext length.

        Raise AuthError if the tag does not match; ``out`` is then zeroed, so a
        caller that ignores the error still never sees forged plaintext.
        """
        n = self._check_open(nonce, aad, sealed, out)
        self._crypt(nonce, sealed, 0, out, 0, n)
        t = self._tag(nonce, aad, out, n)
        s0 = self._keystream(nonce, 0)
        diff = 0
        for i in range(TAG_LEN):
            diff |= (t[i] ^ s0[i]) ^ sealed[n + i]
        if diff:
            for i in range(n):
                out[i] = 0
            raise AuthError("CCM tag mismatch")
        return n

    def seal(self, nonce, aad, plaintext):
        """Return a new bytearray: ciphertext followed by the 8-byte tag."""
        out = bytearray(len(plaintext) + TAG_LEN)
        self.seal_into(nonce, aad, plaintext, out)
        return out

    def open(self, nonce, aad, sealed):
        """Return the plaintext as a new bytearray, or raise AuthError if the tag does not match."""
        out = bytearray(max(0, len(sealed) - TAG_LEN))
        self.open_into(nonce, aad, sealed, out)
        return out


class OpenSSLCCM(PortableCCM):
    """PortableCCM's interface and checks, each message done by OpenSSL's AES-CCM at once.

    It remembers what it opened lately: a simulated beacon or broadcast is the
    same bytes, opened under the same key, by every station that hears it.
    """

    OPENED_MAX = 64

    def __init__(self, key):
        PortableCCM.__init__(self, key)
        self._whole = AESCCM(bytes(key), TAG_LEN)
        self._opened = {}  # (nonce, aad, sealed) -> plaintext, or None if it did not authenticate

    def seal_into(self, nonce, aad, plaintext, out, offset=0):
        n = self._check_seal(nonce, aad, plaintext, out, offset)
        out[offset:offset + n + TAG_LEN] = self._whole.encrypt(bytes(nonce), bytes(plaintext), bytes(aad))
        return n + TAG_LEN

    def open_into(self, nonce, aad, sealed, out):
        n = self._check_open(nonce, aad, sealed, out)
        args = (bytes(nonce), bytes(aad), bytes(sealed))
        opened = self._opened
        if args in opened:
            plain = opened[args]
        else:
            try:
                plain = self._whole.decrypt(args[0], args[2], args[1])
            except InvalidTag:
                plain = None
            if len(opened) >= self.OPENED_MAX:
                opened.clear()
            opened[args] = plain
        if plain is None:  # as PortableCCM: nothing of a forgery stays in out
            for i in range(n):
                out[i] = 0
            raise AuthError("CCM tag mismatch")
        out[:n] = plain
        return n


CCM = PortableCCM if AESCCM is None else OpenSSLCCM
