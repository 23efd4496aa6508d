"""What differs between MicroPython and CPython, in one place."""

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython: const() is only a hint to the MicroPython compiler

    def const(value):
        return value


try:
    from cryptolib import aes as _mp_aes

    class BlockCipher:
        """AES-128 forward cipher on one 16-byte block (ECB), allocation-free on MicroPython."""

        def __init__(self, key):
            self._aes = _mp_aes(bytes(key), 1)  # 1 = MODE_ECB

        def encrypt_block(self, src, dst):
            self._aes.encrypt(src, dst)

    AESCCM = InvalidTag = None  # no whole-message CCM in MicroPython: protocol.ccm builds it on the block

except ImportError:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.exceptions import InvalidTag  # noqa: F401
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM  # noqa: F401

    class BlockCipher:
        """AES-128 forward cipher on one 16-byte block (ECB), backed by OpenSSL."""

        def __init__(self, key):
            self._enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

        def encrypt_block(self, src, dst):
            dst[:] = self._enc.update(bytes(src))
