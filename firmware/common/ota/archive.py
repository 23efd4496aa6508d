"""The image: a flat archive of the application's files.

Each entry is ``u8 name length, name (UTF-8, '/'-separated), u32 size
(little-endian), data``; entries follow each other to the end. Its SHA-256 is
the manifest's image digest, and slots.archive_digest recomputes it from the
unpacked files, so a slot can be checked without the archive.
"""

import os
import struct

from firmware.common.ota.slots import DIGEST_FILE, FILES_INDEX, archive_digest, make_dirs, read_file, write_atomic
from protocol.errors import ProtocolError

_CHUNK = 256  # copy buffer: small against a 64 KiB heap
NAME_MAX = 255


def pack(files):
    """The archive of ``files``, a list of (name, bytes) pairs, in that order (host side)."""
    out = []
    for name, data in files:
        encoded = name.encode()
        if not encoded or len(encoded) > NAME_MAX or encoded.startswith(b"/") or b".." in encoded:
            raise ValueError("bad file name in image: %r" % name)
        out.append(struct.pack("<B", len(encoded)) + encoded + struct.pack("<I", len(data)) + bytes(data))
    return b"".join(out)


def unpack(image_path, dest, image_sha256):
    """Write the archive's files under ``dest``, with the index and digest that make it a slot.

    Raises ProtocolError if the archive is malformed or the unpacked files do
    not hash back to ``image_sha256``.
    """
    names = []
    buf = bytearray(_CHUNK)
    with open(image_path, "rb") as f:
        while True:
            head = f.read(1)
            if not head:
                break
            name = f.read(head[0]).decode()
            size_bytes = f.read(4)
            if len(name) != head[0] or len(size_bytes) != 4 or name.startswith("/") or ".." in name:
                raise ProtocolError("image archive is malformed")
            size = struct.unpack("<I", size_bytes)[0]
            path = dest + "/" + name
            make_dirs(path.rsplit("/", 1)[0])
            with open(path, "wb") as out:
                while size:
                    n = f.readinto(memoryview(buf)[:min(size, _CHUNK)])
                    if not n:
                        raise ProtocolError("image archive is truncated")
                    out.write(memoryview(buf)[:n])
                    size -= n
            names.append(name)
    if archive_digest(dest, names) != image_sha256:
        raise ProtocolError("unpacked image does not match its digest")
    write_atomic(dest + "/" + FILES_INDEX, "\n".join(names).encode())
    write_atomic(dest + "/" + DIGEST_FILE, image_sha256)


class SlotImage:
    """The archive of an unpacked slot, read back by byte range: a module serves the image it runs.

    The archive is not kept after the install; its bytes follow from the slot's
    files in their archive order (FILES_INDEX), so any page can be rebuilt.
    """

    def __init__(self, base):
        self.entries = []  # (offset in the archive, entry header, file path, file size)
        offset = 0
        for name in read_file(base + "/" + FILES_INDEX).decode().split("\n"):
            if not name:
                continue
            encoded = name.encode()
            path = base + "/" + name
            size = os.stat(path)[6]
            head = struct.pack("<B", len(encoded)) + encoded + struct.pack("<I", size)
            self.entries.append((offset, head, path, size))
            offset += len(head) + size
        self.size = offset

    def read(self, start, n):
        """Bytes ``start`` to ``start + n`` of the archive (fewer at its end)."""
        out = bytearray()
        end = min(start + n, self.size)
        for offset, head, path, size in self.entries:
            body = offset + len(head)
            if body + size <= start or offset >= end:
                continue
            if start < body:
                out += head[max(start, offset) - offset:min(end, body) - offset]
            if end > body:
                with open(path, "rb") as f:
                    f.seek(max(start, body) - body)
                    out += f.read(min(end, body + size) - max(start, body))
        return bytes(out)
