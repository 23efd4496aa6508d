"""Ed25519 key files: the agent's signing key and central's public keys.

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), readable by
openssl. Rotation: ``balans agent keygen`` writes a new key, central registers
its public key under a new kid, then the config names the new key_file and kid.
Batches are signed when sent, so batches still queued go out under the new key.
"""

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.config import ConfigError


def load_private(path):
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError("cannot read Ed25519 private key %s: %s" % (path, e)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("%s is not an Ed25519 private key" % path)
    return key


def load_public(path):
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError("cannot read Ed25519 public key %s: %s" % (path, e)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("%s is not an Ed25519 public key" % path)
    return key


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate(private_path, public_path=None):
    """Write a new private key (mode 0600) and, if asked, its public key; return the private key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    if public_path:
        with open(public_path, "wb") as f:
            f.write(public_pem(key))
    return key
