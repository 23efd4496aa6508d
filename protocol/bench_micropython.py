"""The MicroPython half of ``balans bench protocol``: radio frames sealed and opened per second.

Run by protocol/bench.py as ``micropython protocol/bench_micropython.py <repo> <frames>``;
prints one line ``frames_per_s aes_blocks_per_s``, each the best of 3 runs. The
baseline, timed in the same process, is the bare AES block of ``cryptolib`` that
CCM is built on.
"""

import sys
import time

sys.path.insert(0, sys.argv[1])

from protocol import frame, messages  # noqa: E402
from protocol.compat import BlockCipher  # noqa: E402

KEY = bytes(range(16))


def frames_per_s(n):
    hourly = messages.Hourly(490000, 0, 150, 0x71, (123456, 7890, 4242), (300, 12, 5, 280, 9, 7)).encode()
    f = frame.Frame(0x1234, frame.T_DATA, 0x2A, frame.CONCENTRATOR, 0, hourly)
    start = time.ticks_us()
    for i in range(n):
        f.counter = i
        frame.open_frame(frame.seal_frame(f, KEY), KEY)
    return n * 1e6 / time.ticks_diff(time.ticks_us(), start)


def aes_blocks_per_s(n):
    aes = BlockCipher(KEY)
    src, dst = bytearray(16), bytearray(16)
    start = time.ticks_us()
    for _ in range(n):
        aes.encrypt_block(src, dst)
    return n * 1e6 / time.ticks_diff(time.ticks_us(), start)


n = int(sys.argv[2])
print("%.1f %.1f" % (max(frames_per_s(n) for _ in range(3)), max(aes_blocks_per_s(n * 20) for _ in range(3))))
