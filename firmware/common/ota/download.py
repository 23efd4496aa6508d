"""Pages of an image into flash, with a saved missing-page bitmap so a module resumes after power loss.

Files under ``<flash>/ota/dl/`` (DLMS image transfer's pattern: a block
bitmap the sender reads to resend only what is missing)::

    image      the image being received, preallocated to its full size
    missing    bitmap, bit i set while page i is missing (replaced atomically)
    table      the page-hash table, once it matched the signed manifest
    envelope   the signed manifest; written last when a session starts, so
               its presence means the other files are ready

Each page is checked against its hash before it is written. A page's data is
written (and the file closed, which commits it on LittleFS) before its bit is
cleared, so a power cut can only make a module ask again for a page it had.
"""

import hashlib

from firmware.common.ota.manifest import ENVELOPE_LEN, MANIFEST_LEN, PAGE_HASH_LEN, Manifest, check_table, page_hash
from firmware.common.ota.slots import exists, make_dirs, read_file, remove_tree, write_atomic
from protocol.errors import AuthError, ProtocolError

_CHUNK = 256  # write and hash buffer: small against a 64 KiB heap


class Download:
    """The one download session a module keeps, resumed from flash by the constructor."""

    def __init__(self, ota_dir):
        self.dir = ota_dir + "/dl"
        self.manifest = None
        self.envelope = None
        self.table = None
        self.missing = None
        self._resume()

    def _resume(self):
        try:
            envelope = read_file(self.dir + "/envelope")
            manifest = Manifest.decode(envelope[:MANIFEST_LEN])
            missing = bytearray(read_file(self.dir + "/missing"))
            table = read_file(self.dir + "/table") if exists(self.dir + "/table") else None
        except (OSError, ValueError):
            return  # no session, or one whose start a power cut interrupted: start again when offered
        if len(envelope) != ENVELOPE_LEN or len(missing) != (manifest.pages + 7) // 8:
            return
        self.envelope, self.manifest, self.missing, self.table = envelope, manifest, missing, table

    def start(self, envelope, manifest):
        """Begin receiving the image ``manifest`` (already verified) describes, discarding any other."""
        self.clear()
        make_dirs(self.dir)
        zeros = bytes(_CHUNK)
        with open(self.dir + "/image", "wb") as f:
            left = manifest.size
            while left:
                left -= f.write(zeros[:min(left, _CHUNK)])
        missing = bytearray((manifest.pages + 7) // 8)
        for i in range(manifest.pages):
            missing[i >> 3] |= 1 << (i & 7)
        write_atomic(self.dir + "/missing", missing)
        write_atomic(self.dir + "/envelope", envelope)
        self.envelope, self.manifest, self.missing, self.table = bytes(envelope), manifest, missing, None

    def clear(self):
        remove_tree(self.dir)
        self.envelope = self.manifest = self.table = self.missing = None

    def put_table(self, table):
        check_table(self.manifest, table)
        write_atomic(self.dir + "/table", table)
        self.table = bytes(table)

    def put_page(self, index, data):
        """Store page ``index`` if it matches its hash; AuthError if not, nothing stored."""
        m = self.manifest
        if self.table is None:
            raise ProtocolError("page before the page-hash table")
        if index >= m.pages or len(data) != m.page_length(index):
            raise ProtocolError("page %d of %d bytes does not fit the image" % (index, len(data)))
        if page_hash(data) != self.table[index * PAGE_HASH_LEN:(index + 1) * PAGE_HASH_LEN]:
            raise AuthError("page %d does not match its hash" % index)
        if not self.is_missing(index):
            return
        with open(self.dir + "/image", "r+b") as f:
            f.seek(index * m.page_size)
            f.write(data)
        self.missing[index >> 3] &= ~(1 << (index & 7)) & 0xFF
        write_atomic(self.dir + "/missing", self.missing)

    def read_page(self, index):
        """Page ``index`` as stored (a relay sends it on only once it is no longer missing)."""
        with open(self.dir + "/image", "rb") as f:
            f.seek(index * self.manifest.page_size)
            return f.read(self.manifest.page_length(index))

    def is_missing(self, index):
        return bool(self.missing[index >> 3] & (1 << (index & 7)))

    def missing_pages(self):
        return [i for i in range(self.manifest.pages) if self.is_missing(i)]

    def complete(self):
        return self.manifest is not None and self.table is not None and not any(self.missing)

    def verify_image(self):
        """Hash the stored image against the manifest; on mismatch mark the damaged pages missing again."""
        m = self.manifest
        whole = hashlib.sha256()
        damaged = []
        with open(self.dir + "/image", "rb") as f:
            for i in range(m.pages):
                data = f.read(m.page_length(i))
                whole.update(data)
                if page_hash(data) != self.table[i * PAGE_HASH_LEN:(i + 1) * PAGE_HASH_LEN]:
                    damaged.append(i)
        if whole.digest() == m.image_sha256 and not damaged:
            return True
        for i in damaged:
            self.missing[i >> 3] |= 1 << (i & 7)
        write_atomic(self.dir + "/missing", self.missing)
        return False

    def image_path(self):
        return self.dir + "/image"
