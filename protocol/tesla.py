"""Broadcast authentication by delayed key disclosure (uTESLA, Perrig et al. 2002), one source for both ends.

A broadcast is sealed under the network key, which every module holds, so that seal proves
nothing about who sent it. uTESLA adds a tag under a key nobody else knows yet:

- The edge agent makes a one-way chain K_N -> ... -> K_1 -> K_0 (K_i-1 = previous(K_i)) and
  gives each module K_0 (the *anchor*) in a command sealed under that module's own key.
- Time is cut into INTERVAL_S intervals from the chain's ``start``; a broadcast sent in
  interval i carries ``tag(K_i, i, payload)``; K_i itself is broadcast DISCLOSE_AFTER
  intervals later.
- A module keeps a tagged broadcast only if, by its clock, K_i cannot have been disclosed
  yet (``undisclosed``); when K_i arrives it checks that hashing it forward reaches its
  anchor (``Anchor.accept``), then the tag, and only then acts.

A thief with the network key sees K_i only after every honest module has stopped
accepting broadcasts of interval i, so it can forge nothing. The price is latency: a
broadcast acts DISCLOSE_AFTER intervals after it was sent (40 s, about what a classic
ripple-control telegram takes), and the modules' clocks must be right within
CLOCK_BEHIND_S, which the hourly authenticated time sync keeps them.

Costs on a module: a SHA-256 per interval skipped since the last disclosure it heard (an
hourly broadcast: 720), four for a tag; 16 bytes of anchor on flash. The agent's end, the
chain itself, is edge_agent/broadcasts.py's KeyChain.
"""

import hashlib
import struct

from protocol.compat import const

INTERVAL_S = const(5)  # key interval: short, because a broadcast acts only when its key is out
# Intervals from a broadcast to its key's disclosure. The margin, (DISCLOSE_AFTER - 1) * INTERVAL_S
# = 35 s, must cover a broadcast's travel to the 30th hop (p95 5-10 s, worst seen ~20 s) plus how far
# a module's clock may lag (CLOCK_BEHIND_S); a broadcast that arrives later is refused, not forged.
DISCLOSE_AFTER = const(8)
CLOCK_BEHIND_S = const(15)  # a module's clock lags the agent's by its last sync's travel: at most this
KEY_LEN = const(16)
TAG_LEN = const(8)  # 64-bit tags: a forger gets one guess per broadcast, checked once per interval
MAX_SKIP = const(1 << 20)  # hashes a module spends at most to bridge a gap since its anchor (60 days)
_CHAIN = b"\x01"  # domain separation: chain steps and MAC keys are different functions of K_i
_MAC = b"\x02"


def previous(key):
    """K_i-1 from K_i: the chain's one-way step."""
    return hashlib.sha256(_CHAIN + key).digest()[:KEY_LEN]


def tag(key, interval, payload):
    """The tag a broadcast of ``interval`` carries: HMAC-SHA256 under a key derived from K_i, truncated."""
    mac_key = hashlib.sha256(_MAC + key).digest() + bytes(32)  # padded to SHA-256's 64-byte block
    head = struct.pack("<I", interval)
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in mac_key) + head + bytes(payload)).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in mac_key) + inner).digest()[:TAG_LEN]


def undisclosed(start, interval, unix):
    """True if a module whose clock reads ``unix`` may still take a broadcast tagged for ``interval``.

    Its clock may lag the agent's by CLOCK_BEHIND_S; the key goes out at the start of
    interval + DISCLOSE_AFTER by the agent's clock.
    """
    return unix + CLOCK_BEHIND_S < start + (interval + DISCLOSE_AFTER) * INTERVAL_S


def earlier(key, steps):
    """K_(i - steps) from K_i: ``steps`` chain steps down."""
    for _ in range(steps):
        key = previous(key)
    return key


def reaches(key, steps, anchor_key):
    """True if ``key`` hashes to ``anchor_key`` in ``steps`` (1..MAX_SKIP) chain steps: a genuine later key."""
    return 0 < steps <= MAX_SKIP and len(key) == KEY_LEN and earlier(key, steps) == anchor_key
