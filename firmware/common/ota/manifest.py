"""The signed update manifest: what an image is, whom it is for, and how to check every page.

Shaped after SUIT (RFC 9124) but a fixed little-endian struct, because a
module parses it in a few hundred bytes of RAM without CBOR::

    off len field
    0   4   magic         b"BOTA"
    4   1   version       manifest format, FORMAT_VERSION
    5   1   component     what the image replaces (COMPONENT_APP: the application files)
    6   16  vendor_id     UUID5 of the vendor (RFC 9124 vendor identifier)
    22  16  class_id      UUID5 of the device class: a D100FC never installs a J100UC image
    38  4   seq           sequence number; a module accepts only seq above its installed one
    42  4   size          image bytes
    46  2   page_size     bytes per page (the last page may be shorter)
    48  2   pages         page count = ceil(size / page_size)
    50  32  image_sha256  SHA-256 of the whole image
    82  32  table_sha256  SHA-256 of the page-hash table
    114 2   min_battery_mv  a module below this refuses to start the update

The envelope is the manifest followed by the vendor's 64-byte Ed25519
signature over it. The page-hash table (PAGE_HASH_LEN bytes per page, the
truncated SHA-256 of the page) travels after it; every relay and the module
check each page against it before storing or forwarding it.
"""

import hashlib
import struct

from firmware.common.ota import ed25519
from protocol.compat import const
from protocol.errors import AuthError, ProtocolError, ReplayError

MAGIC = b"BOTA"
FORMAT_VERSION = const(1)
COMPONENT_APP = const(1)
PAGE_HASH_LEN = const(16)  # truncated SHA-256: 128-bit second-preimage resistance per page
PAGE_SIZE = const(256)  # 8 radio fragments of 32 bytes; also a flash program unit on common MCUs
# An ER18505 Li-SOCl2 cell holds ~3.6 V for most of its life and sags below 3.3 V near its end,
# where hours of extra radio and flash writes risk a brown-out mid-update.
MIN_BATTERY_MV = const(3300)

# uuid5(NAMESPACE_DNS, "balans.open-metering.org"), and uuid5(vendor, "D100FC" / "J100UC")
VENDOR_BALANS = bytes.fromhex("18b61863eb415331b890c89050aca605")
CLASS_D100FC = bytes.fromhex("939a43800f525cbc91d6779cb87255c0")
CLASS_J100UC = bytes.fromhex("a06f1d50a2075ec086774784902afb9a")

_LAYOUT = "<4sBB16s16sIIHH32s32sH"
MANIFEST_LEN = const(116)
ENVELOPE_LEN = const(180)  # MANIFEST_LEN + ed25519.SIGNATURE_LEN
_FIELDS = ("version", "component", "vendor_id", "class_id", "seq", "size", "page_size", "pages",
           "image_sha256", "table_sha256", "min_battery_mv")


class Manifest:
    """One decoded manifest; build one with keyword arguments named as in the layout."""

    def __init__(self, **fields):
        for name in _FIELDS:
            setattr(self, name, fields[name])

    def encode(self):
        return struct.pack(_LAYOUT, MAGIC, *[getattr(self, name) for name in _FIELDS])

    @classmethod
    def decode(cls, buf):
        if len(buf) != MANIFEST_LEN:
            raise ProtocolError("manifest must be %d bytes, got %d" % (MANIFEST_LEN, len(buf)))
        values = struct.unpack(_LAYOUT, buf)
        if values[0] != MAGIC or values[1] != FORMAT_VERSION:
            raise ProtocolError("not a version %d update manifest" % FORMAT_VERSION)
        m = cls(**dict(zip(_FIELDS, values[1:])))
        if m.page_size == 0 or m.size == 0 or m.pages != page_count(m.size, m.page_size):
            raise ProtocolError("manifest pages %d do not cover %d bytes" % (m.pages, m.size))
        return m

    def page_length(self, index):
        """Bytes in page ``index``: page_size except for a shorter last page."""
        return min(self.page_size, self.size - index * self.page_size)


def page_count(size, page_size):
    return (size + page_size - 1) // page_size


def page_hash(data):
    return hashlib.sha256(data).digest()[:PAGE_HASH_LEN]


def open_envelope(envelope, vendor_key):
    """The manifest inside ``envelope`` if ``vendor_key`` signed it; AuthError if not."""
    if len(envelope) != ENVELOPE_LEN:
        raise ProtocolError("update envelope must be %d bytes, got %d" % (ENVELOPE_LEN, len(envelope)))
    body = bytes(envelope[:MANIFEST_LEN])
    manifest = Manifest.decode(body)
    if not ed25519.verify(vendor_key, body, envelope[MANIFEST_LEN:]):
        raise AuthError("update manifest signature is not the vendor's")
    return manifest


def check_applicable(manifest, vendor_id, class_id, installed_seq):
    """Refuse a manifest for another vendor, device class or component, or one not newer."""
    if manifest.vendor_id != vendor_id or manifest.class_id != class_id:
        raise ProtocolError("update is for another device class")
    if manifest.component != COMPONENT_APP:
        raise ProtocolError("update component %d not supported" % manifest.component)
    if manifest.seq <= installed_seq:
        raise ReplayError("update seq %d is not above installed %d" % (manifest.seq, installed_seq))


def check_table(manifest, table):
    """Raise AuthError unless ``table`` is the page-hash table the manifest signed."""
    if len(table) != manifest.pages * PAGE_HASH_LEN or hashlib.sha256(table).digest() != manifest.table_sha256:
        raise AuthError("page-hash table does not match the manifest")


def page_table(image, page_size):
    return b"".join(page_hash(image[i:i + page_size]) for i in range(0, len(image), page_size))


def build(image, seq, class_id, sign, vendor_id=VENDOR_BALANS, page_size=PAGE_SIZE, min_battery_mv=MIN_BATTERY_MV):
    """The (envelope, page-hash table) of ``image``; ``sign(bytes) -> 64 bytes`` holds the vendor key."""
    table = page_table(image, page_size)
    manifest = Manifest(version=FORMAT_VERSION, component=COMPONENT_APP, vendor_id=vendor_id, class_id=class_id,
                        seq=seq, size=len(image), page_size=page_size, pages=page_count(len(image), page_size),
                        image_sha256=hashlib.sha256(image).digest(), table_sha256=hashlib.sha256(table).digest(),
                        min_battery_mv=min_battery_mv)
    body = manifest.encode()
    return body + sign(body), table
