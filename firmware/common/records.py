"""Power-loss-safe storage of one small record: two alternating files, the newest valid one wins.

LittleFS commits a file only when it is closed, so a cut while writing leaves
the previous contents; the second file and the CRC32 keep a valid record even
if a cut, a bad block or a partial write spoils the file being written.
On flash each file holds: payload, sequence number (u32), CRC32 of both (u32).
"""

import struct

from binascii import crc32

TRAILER = "<II"


class RecordStore:
    def __init__(self, directory, name):
        self._paths = (directory + "/" + name + ".a", directory + "/" + name + ".b")
        self.seq = 0

    def load(self):
        """Return the newest valid payload (and remember its sequence number), or None."""
        best = None
        for path in self._paths:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if len(data) < 8:
                continue
            seq, crc = struct.unpack_from(TRAILER, data, len(data) - 8)
            if crc32(data[:-4]) & 0xFFFFFFFF != crc:
                continue
            if best is None or seq > self.seq:
                self.seq = seq
                best = data[:-8]
        return best

    def save(self, payload):
        """Write ``payload`` over the older of the two files."""
        self.seq += 1
        body = bytes(payload) + struct.pack("<I", self.seq)
        with open(self._paths[self.seq & 1], "wb") as f:
            f.write(body)
            f.write(struct.pack("<I", crc32(body) & 0xFFFFFFFF))
