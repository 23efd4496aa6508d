"""Signed update bundles on the host: the vendor builds and signs them; everyone else only reads them.

A bundle file (``.bota``) is the envelope (signed manifest), the page-hash
table and the image, back to back; the manifest gives each one's length.
"""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.exceptions import InvalidSignature

from firmware.common.ota import manifest as mf
from protocol.errors import AuthError, ProtocolError

CLASSES = {"d100fc": mf.CLASS_D100FC, "j100uc": mf.CLASS_J100UC}


class Bundle:
    def __init__(self, envelope, table, image):
        self.envelope = envelope
        self.table = table
        self.image = image
        self.manifest = mf.Manifest.decode(envelope[:mf.MANIFEST_LEN])

    def encode(self):
        return self.envelope + self.table + self.image

    def page(self, index):
        size = self.manifest.page_size
        return self.image[index * size:(index + 1) * size]

    def verify(self, public_key):
        """Raise AuthError unless the vendor signed it and table and image match (the concentrator's check)."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(self.envelope[mf.MANIFEST_LEN:],
                                                                  self.envelope[:mf.MANIFEST_LEN])
        except InvalidSignature:
            raise AuthError("bundle signature is not the vendor's") from None
        mf.check_table(self.manifest, self.table)
        if mf.page_table(self.image, self.manifest.page_size) != self.table:
            raise AuthError("bundle image does not match its page-hash table")


def make(image, seq, device_class, private_key, page_size=mf.PAGE_SIZE, min_battery_mv=mf.MIN_BATTERY_MV):
    """A Bundle of ``image`` for ``device_class`` ("d100fc"), signed with an Ed25519PrivateKey."""
    envelope, table = mf.build(image, seq, CLASSES[device_class], private_key.sign,
                               page_size=page_size, min_battery_mv=min_battery_mv)
    return Bundle(envelope, table, image)


def read(data):
    """The Bundle in ``data``; ProtocolError if it is not one (signature not checked here)."""
    if len(data) < mf.ENVELOPE_LEN:
        raise ProtocolError("not an update bundle: %d bytes" % len(data))
    envelope = data[:mf.ENVELOPE_LEN]
    m = mf.Manifest.decode(envelope[:mf.MANIFEST_LEN])
    table_end = mf.ENVELOPE_LEN + m.pages * mf.PAGE_HASH_LEN
    if len(data) != table_end + m.size:
        raise ProtocolError("bundle of %d bytes, its manifest says %d" % (len(data), table_end + m.size))
    return Bundle(envelope, data[mf.ENVELOPE_LEN:table_end], data[table_end:])


def new_key():
    return Ed25519PrivateKey.generate()


def key_to_pem(private_key):
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def key_from_pem(data):
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the vendor key must be an Ed25519 private key")
    return key


def public_bytes(private_key):
    """The 32-byte raw public key a module holds to verify updates."""
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
