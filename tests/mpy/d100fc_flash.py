# A fresh LittleFS volume on a RamFlash, mounted for one test (MicroPython only).
import vfs

from firmware.common.ramflash import RamFlash

MOUNT = "/d100fc"


def mount(block_size=512, block_count=256, image=None):
    """Mount a RamFlash (fresh and formatted, or ``image``) at MOUNT; return the device."""
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass
    dev = RamFlash(block_size, block_count, image)
    if image is None:
        vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), MOUNT)
    return dev
