"""A flash chip in RAM for ``vfs.VfsLfs2``, which counts wear and can lose power.

It speaks MicroPython's extended block-device protocol (``readblocks`` and
``writeblocks`` with a byte offset, ``ioctl`` erase), so LittleFS runs on it
exactly as on a board. ``cut_after = k`` makes the k-th program or erase (0-based)
the moment power fails: ``image`` then keeps the flash as it was just before
that operation, while the live copy runs on so the firmware above never notices.
Remounting ``image`` is what the module finds after the cut. ``failing = True``
makes every program and erase fail (EIO), as a worn-out chip does.
"""

from array import array

from protocol.compat import const

IOCTL_BLOCK_COUNT = const(4)
IOCTL_BLOCK_SIZE = const(5)
IOCTL_BLOCK_ERASE = const(6)
EIO = const(5)


class RamFlash:
    def __init__(self, block_size=4096, block_count=64, image=None):
        self.block_size = block_size
        self.block_count = block_count
        self.data = bytearray(image) if image is not None else bytearray(b"\xff" * (block_size * block_count))
        self.ops = 0  # programs and erases so far
        self.erases = 0
        self.wear = array("I", [0] * block_count)  # erases per block
        self.cut_after = -1
        self.image = None  # the flash at the power cut, once it has happened
        self.failing = False

    def _operation(self):
        if self.ops == self.cut_after:
            self.image = bytes(self.data)
        self.ops += 1

    def readblocks(self, block, buf, offset=0):
        at = block * self.block_size + offset
        buf[:] = self.data[at:at + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple protocol: erase then program whole blocks
            for i in range(len(buf) // self.block_size):
                self.ioctl(IOCTL_BLOCK_ERASE, block + i)
            offset = 0
        if self.failing:
            return -EIO  # LittleFS raises OSError(EIO) to the writer
        self._operation()
        at = block * self.block_size + offset
        self.data[at:at + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == IOCTL_BLOCK_ERASE:
            if self.failing:
                return -EIO
            self._operation()
            self.erases += 1
            self.wear[arg] += 1
            at = arg * self.block_size
            self.data[at:at + self.block_size] = b"\xff" * self.block_size
        return 0
