"""The concentrator keys central trusts, kept in the store.

An operator registers a concentrator's public key (``balans central keys add``)
and may revoke it; running ingest workers must follow without a restart.
``StoreVerifier`` verifies batches like ``protocol.batch.Verifier`` and reads
the keys again when a batch names a key id it does not know, or when
``RELOAD_S`` has passed, so a key registered a moment ago is honoured and a
revoked one stops being honoured within ``RELOAD_S``.
"""

import time

from cryptography.hazmat.primitives import serialization

from protocol.batch import Verifier
from protocol.cose import parse_sign1

# How stale a worker's view of the keys may get: a revoked key is refused at most this
# long after `balans central keys revoke`.
RELOAD_S = 60
# At most this often a batch under an unknown key id makes a worker read the keys again:
# a flood of forged batches with made-up kids must not become a flood of queries.
UNKNOWN_RELOAD_S = 5


def parse_public_key(pem):
    """The Ed25519 public key in ``pem`` (bytes or text); ValueError saying what is wrong."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as e:
        raise ValueError("not a PEM public key (%s)" % e) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key: batches are signed with Ed25519")
    return key


class StoreVerifier:
    """Verifies batches against the concentrator keys in ``store`` (see module docstring)."""

    def __init__(self, store, clock=time.monotonic):
        self.store = store
        self.clock = clock
        self.kids = set()
        self._loaded = self._unknown_reload = float("-inf")
        self.reload()

    def reload(self):
        verifier, kids = Verifier(), set()
        for kid, conc, pem, _, revoked in self.store.concentrator_keys():
            if revoked is None:
                verifier.add_key(kid.encode(), parse_public_key(pem), conc)
                kids.add(kid)
        self._verifier, self.kids = verifier, kids
        self._loaded = self.clock()

    def verify(self, data):
        """Return the Batch, or raise AuthError (signature, key) or ProtocolError (format)."""
        now = self.clock()
        if now - self._loaded >= RELOAD_S:
            self.reload()
        elif parse_sign1(data)[1].decode(errors="replace") not in self.kids \
                and now - self._unknown_reload >= UNKNOWN_RELOAD_S:
            self._unknown_reload = now
            self.reload()
        return self._verifier.verify(data)
