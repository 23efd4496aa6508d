"""Payloads of the mesh's own frames (docs/mesh.md). Sealed like every frame: beacons and
acknowledgements under the network key, join requests and answers under the module key.

BEACON  (T_BEACON, to BROADCAST)   version u8, depth u8, rank u16, parent u16, phase u16
ACK     (T_ACK, to the link sender) rank u16, depth u8, phase u16; bound (not sent): acked src u16, counter u32
JOIN    (T_JOIN, up to CONCENTRATOR) parent u16, rank u16, depth u8
ANSWER  (T_JOIN, down to the module) status u8, version u8

``rank`` is the path cost to the concentrator in ETX/128 units (RFC 6719's
MinHopRankIncrease 128), RANK_INFINITE when the sender has no route.
``phase`` is the sender's position in the MAC superframe (ms) when it sealed the
frame: receivers align their rendezvous with it. ``version`` is the
concentrator's boot generation: a new one rebuilds the network (global repair).
An ACK names the frame it acknowledges (its origin and counter) as associated data of its tag
(frame.seal_frame's ``bound``), not in its payload: the sender waiting for that ACK knows them, and
6 bytes less on air in every acknowledgement (a relay sends and hears one per frame it carries).
"""

import struct

from protocol.compat import const
from protocol.errors import ProtocolError

RANK_INFINITE = const(0xFFFF)
ETX_ONE = const(128)  # one perfect hop

BEACON_FMT = "<BBHHH"
ACK_FMT = "<HBH"
ACKED_FMT = "<HI"  # the acknowledged frame: src, counter (bound, not sent)
JOIN_FMT = "<HHB"
ANSWER_FMT = "<BB"
BEACON_LEN = const(8)
ACK_LEN = const(5)
JOIN_LEN = const(5)
ANSWER_LEN = const(2)

JOIN_OK = const(0)


def unpack(fmt, size, payload):
    """struct.unpack that raises ProtocolError, the one error of every decoder."""
    if len(payload) != size:
        raise ProtocolError("mesh control payload of %d bytes, expected %d" % (len(payload), size))
    return struct.unpack(fmt, payload)
