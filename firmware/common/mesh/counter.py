"""The origin's frame counter: never reused under one key, even across resets.

CCM's nonce is (net, src, dst, counter, type); a repeated counter under the
same key would leak plaintext. The counter is kept in flash as a reservation:
the file holds a limit no counter has reached; on boot counting resumes there,
and the limit moves RESERVE ahead, so flash is written once per RESERVE frames.
"""

import os

from protocol.compat import const

RESERVE = const(256)  # a busy relay (~1500 frames a day incl. ACKs) writes ~6 times a day


class FrameCounter:
    def __init__(self, path):
        self._path = path
        self.next = 0
        try:
            with open(path) as f:
                self.next = int(f.read())
        except (OSError, ValueError):
            self.next = 0
        self._limit = self.next
        self._reserve()

    def _reserve(self):
        self._limit += RESERVE
        tmp = self._path + ".new"
        with open(tmp, "w") as f:
            f.write(str(self._limit))
        os.rename(tmp, self._path)  # atomic on LittleFS: an old or a new limit, never half

    def take(self):
        value = self.next
        self.next += 1
        if self.next >= self._limit:
            self._reserve()
        return value
