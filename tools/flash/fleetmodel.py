"""A model of one update reaching a whole fleet over the mesh, hop by hop (docs/ota.md, "Fleet model").

This is a model, not a run of the mesh simulator: it schedules the transfer
page by page with the mesh's radio figures and samples frame losses, but no
firmware runs and no radio channel is simulated. Its assumptions:

- Topology: ``modules`` spread evenly over ``depth`` levels; each module's
  parent is a random module one level up (level 1: the concentrator).
- What travels: the units of ota/transfer.py (the envelope, the page-hash
  table in 256-byte pages, the image pages), in fragments of 32 bytes, one
  per frame.
  Parents broadcast a fragment to all their children at once and repeat it
  until every child has it (each child loses each frame with ``loss``, on its
  own); then every child answers once with what it needs next (a NEED).
  A module stores and checks a page before it forwards it (hop by hop).
- Channel: transmissions within REUSE - 1 levels of each other never overlap
  (CSMA in one neighbourhood); farther ones run at once (spatial reuse, as in
  Deluge). Senders of one level take turns.
- Duty cycle: ERC/REC 70-03's 10 % of any hour (360 s of air) is checked per
  sender and reported; an update's air time stays far below it.
- Activation: a relay installs only after its children have every page;
  then verification, unpacking, a reboot, the self-test and rejoining the
  mesh take ACTIVATE_S.
- Energy: from the module's first page until it activates it listens
  continuously (RX current), plus its transmissions and the MCU's work per
  frame and for the activation.
"""

import bisect
import math
import random

from firmware.common.ota import transfer
from firmware.common.ota.manifest import ENVELOPE_LEN, PAGE_HASH_LEN, PAGE_SIZE
from protocol.frame import HEADER_LEN
from protocol.ccm import TAG_LEN

BITRATE = 38400  # CC1101 at 38.4 kBaud, as the mesh uses (firmware/common/mesh/mac.py)
PHY_OVERHEAD = 10  # 4 preamble + 4 sync + 2 CRC bytes around each frame
GAP_S = 0.002  # carrier sense and RX/TX turnaround between frames
FRAGMENT = transfer.FRAGMENT  # bytes per frame (firmware/common/ota/transfer.py)
FRAGMENT_HEADER = 7  # type, session, part, index, fragment: 17 + 7 + 32 + 8 = 64, a full frame
NACK_PAYLOAD = 7  # a NEED answer
REUSE = 3  # levels h-2 .. h+2 hear each other: transmissions 3 levels apart may overlap
DUTY_LIMIT_S = 360.0  # 10 % of an hour, ERC/REC 70-03 annex 1 for 433.05-434.79 MHz
TX_MA = 29.2  # CC1101 TX at +10 dBm (datasheet SWRS061), as simulator/energy.py
RX_MA = 15.7  # CC1101 RX at 38.4 kBaud
MCU_ACTIVE_MA = 8.0  # a Cortex-M4 running MicroPython
MCU_FRAME_S = 0.020  # MicroPython handling one received frame (CCM, bitmap, page write)
ACTIVATE_CPU_S = 10.0  # Ed25519 (59 ms on x86 unix port, ~100x slower on an MCU: ~6 s), hashing, unpacking
ACTIVATE_S = 180.0  # activation CPU, reboot, self-test and rejoining the mesh (a few beacon cycles)
CELL_MAH = 4000.0  # ER18505
USABLE = 0.85  # capacity above the cut-off at the end of life


def frame_s(payload):
    return (HEADER_LEN + payload + TAG_LEN + PHY_OVERHEAD) * 8 / BITRATE + GAP_S


def topology(modules, depth, rng):
    """(level, parent) per module; parent -1 is the concentrator."""
    levels = [1 + i * depth // modules for i in range(modules)]
    by_level = {}
    for i, level in enumerate(levels):
        by_level.setdefault(level, []).append(i)
    parents = [-1 if level == 1 else rng.choice(by_level[level - 1]) for level in levels]
    return levels, parents


def _place(busy, start, length, stages):
    """Earliest time >= start at which [t, t + length) overlaps no interval of ``stages``."""
    t = start
    moved = True
    while moved:
        moved = False
        for s in stages:
            ends, begins = busy[s]
            i = bisect.bisect_right(ends, t)
            if i < len(begins) and begins[i] < t + length:
                t = ends[i]
                moved = True
    return t


def units(image_bytes, page_size=PAGE_SIZE):
    """(part, index, bytes) of every unit an update sends: envelope, table pages, image pages."""
    pages = math.ceil(image_bytes / page_size)
    table = pages * PAGE_HASH_LEN
    out = [(transfer.ENVELOPE, 0, ENVELOPE_LEN)]
    out += [(transfer.TABLE, i, min(transfer.UNIT, table - i * transfer.UNIT))
            for i in range(math.ceil(table / transfer.UNIT))]
    out += [(transfer.IMAGE, i, min(page_size, image_bytes - i * page_size)) for i in range(pages)]
    return out


def simulate(image_bytes, modules=240, depth=30, loss=0.1, seed=1, network=None, deliver=None):
    """Schedule one update; return its figures.

    ``network``: (levels, parents, loss per module) to use instead of the even
    spread with one ``loss``. ``deliver(module, part, index, fragment)`` is
    called whenever a module hears a fragment (to run real firmware on it).
    """
    rng = random.Random(seed)
    if network is None:
        levels, parents = topology(modules, depth, rng)
        losses = [loss] * modules
    else:
        levels, parents, losses = network
        modules, depth = len(levels), max(levels)
    children = {}
    for i, p in enumerate(parents):
        children.setdefault(p, []).append(i)
    todo = units(image_bytes)
    nack_s = frame_s(NACK_PAYLOAD)
    tx_s, rx_frames, nacks = [0.0] * (modules + 1), [0] * modules, [0] * modules  # index modules: concentrator
    stage_senders = {h: [p for p in children if (levels[p] if p >= 0 else 0) == h - 1] for h in range(1, depth + 1)}
    busy = {h: ([], []) for h in range(1, depth + 1)}  # stage -> (interval ends, interval starts), in time order
    done = {h: [0.0] * len(todo) for h in range(1, depth + 1)}
    first = {h: None for h in range(1, depth + 1)}
    for k, (part, index, size) in enumerate(todo):
        for h in range(1, depth + 1):
            length = 0.0
            for sender in stage_senders[h]:
                kids = children[sender]
                for f in range(0, size, FRAGMENT):
                    air = frame_s(FRAGMENT_HEADER + min(FRAGMENT, size - f))
                    sends = 0
                    for c in kids:
                        tries = _tries(rng, losses[c])
                        sends = max(sends, tries)
                        if deliver is not None:
                            deliver(c, part, index, f // FRAGMENT)
                    tx_s[sender] += sends * air
                    for c in kids:
                        rx_frames[c] += sends
                    length += sends * air
                for c in kids:
                    nacks[c] += 1
                length += len(kids) * nack_s
            ready = max(done[h - 1][k] if h > 1 else 0.0, done[h][k - 1] if k else 0.0)
            near = [s for s in range(h - REUSE + 1, h + REUSE) if s in busy]
            start = _place(busy, ready, length, near)
            ends, begins = busy[h]
            ends.append(start + length)
            begins.append(start)
            done[h][k] = start + length
            if first[h] is None:
                first[h] = start
    finish = {h: done[h][-1] for h in done}
    results = []
    for i in range(modules):
        h = levels[i]
        install = max(finish[h], finish.get(h + 1, 0.0) if children.get(i) else 0.0)
        listen_s = install - first[h]
        sent_s = tx_s[i] + nacks[i] * nack_s
        mas = (listen_s * RX_MA + sent_s * (TX_MA - RX_MA)
               + rx_frames[i] * MCU_FRAME_S * MCU_ACTIVE_MA + ACTIVATE_CPU_S * MCU_ACTIVE_MA)
        results.append((install + ACTIVATE_S, sent_s, mas / 3600.0))
    return {"modules": modules, "depth": depth, "loss": loss if network is None else "per link",
            "units": len(todo), "image_bytes": image_bytes,
            "fleet_update_s": round(max(r[0] for r in results), 1),
            "airtime_s_mean": round(sum(r[1] for r in results) / modules, 2),
            "airtime_s_max": round(max(r[1] for r in results), 2),
            "energy_mah_mean": round(sum(r[2] for r in results) / modules, 3),
            "energy_mah_max": round(max(r[2] for r in results), 3),
            "battery_share": round(max(r[2] for r in results) / (CELL_MAH * USABLE), 6),
            "duty_cycle_ok": max(r[1] for r in results) < DUTY_LIMIT_S,
            "concentrator_airtime_s": round(tx_s[modules], 1)}


def _tries(rng, loss):
    """Transmissions until one child hears a frame, losing each with probability ``loss``."""
    n = 1
    while rng.random() < loss:
        n += 1
    return n
