"""Timing of the low-power MAC: a rendezvous at the receiver's sample on a 38.4 kBaud FSK channel.

Every router samples the channel twice per SUPERFRAME_MS (two cycles of
CYCLE_MS) with the transceiver's own wake-on-radio (CC1101 WOR: 9.8 uA
average at one poll a second). A sender learns the network's cycle phase from
its parent (beacons and acknowledgements carry it) and transmits when its
receiver samples, with a preamble WAKE_PREAMBLE_MS long to cover the residual
clock error. So a relay costs one frame of transmit and one of receive, not a
cycle-long preamble: about 2 mAs instead of 40 (docs/mesh.md has the budget).

- First cycle: unicasts, up and down. Each router samples at its own phase, a
  hash of its address (``unicast_phase``), so that senders to different
  routers, often hidden from each other, rarely meet (measured: with one phase
  per depth, a quarter of the frames to the first ring collided or found the
  channel busy).
- Second cycle: beacons and broadcasts. A router at depth d samples at
  d * SLOT_MS; a node that hears a broadcast forwards it in the next slot,
  where its children sample, so a wave crosses 30 hops in 30 slots (3 s).
  A router that hears DENSE_FORWARDERS or more routers one level up also
  samples the slot of depth d + SECOND_SLOT (``broadcast_depths``): all of
  them forward into its slot at once, and there the flood mostly collides.

The concentrator is mains powered and always listening: frames to it go at once.

Channels: beacons and broadcasts share one channel, BROADCAST_CHANNEL; a
unicast goes on its receiver's own channel (``unicast_channel``, from its
address like its phase), where the receiver samples for unicasts, and the ACK
comes back on it. So exchanges with different receivers go side by side
instead of queueing for one channel (rural, one collision domain: 240
broadcast copies a broadcast, ~7 s of air on one channel).
"""

from protocol.compat import const
from protocol.frame import BROADCAST, CONCENTRATOR, F_FOLLOWS, T_ACK

BITRATE = const(38400)  # CC1101 at 38.4 kBaud: -104 dBm sensitivity (datasheet SWRS061)
PHY_OVERHEAD = const(10)  # 4 preamble + 4 sync + 2 CRC bytes around each frame
# A sender's wake preamble must be on the air when its sleeping receiver samples (0.8 ms at each of its phases,
# cc1101.SETTLE_US, then it stays on only if a carrier is there: boardhal.BoardHAL.idle). So a frame starts
# SAMPLE_LEAD_MS before the sample plus 0-CONTENTION_MS, and its preamble is long enough that the sample falls
# inside it for any start in that window and a rendezvous error of up to CLOCK_ERROR_MS either way:
# WAKE_PREAMBLE_MS = CLOCK_ERROR_MS + CONTENTION_MS + CLOCK_ERROR_MS, less 1 ms spare for the sample's settling.
CLOCK_ERROR_MS = const(3)  # residual phase error to the neighbour we follow (its clock rate learnt: cycle.py)
CONTENTION_MS = const(5)  # senders to one sample spread their start; later ones hear the first (CCA)
SAMPLE_LEAD_MS = const(7)  # CONTENTION_MS - 1 + CLOCK_ERROR_MS: the latest start still leads the sample by 3 ms
WAKE_PREAMBLE_MS = const(11)  # from 7 ms before the sample to 4 ms after it: covers the sample at +-3 ms error
CYCLE_MS = const(1000)  # receiver's channel-sample period
SUPERFRAME_MS = const(2000)  # two cycles: frames go up in the first, down in the second
SLOT_MS = const(100)  # depth stagger: a 64-byte broadcast (19 ms) and its jitter fit in a slot
TURNAROUND_MS = const(1)  # RX->TX switch of the receiver before it acknowledges
ACK_TIMEOUT_MS = const(27)  # ACK_DELAY_MS + a 30-byte ACK (8.3 ms), with margin (was 30: the ACK at once; 40 at ACK_DELAY_MS 25)
# The acknowledgement starts ACK_DELAY_MS after the end of the frame it answers, not as soon as the
# addressee's MCU has it ready: its MicroPython hands the ACK to the radio about 9.6 ms after the frame came in
# on the 80 MHz board, sealing it from the header before any other work (station.py; balans bench mcu, ack_ready:
# 11.2-11.5 ms when it opened the frame first; a collection of its 64 KB heap adds a few ms, and an ACK later
# than ACK_GUARD_MS past its time is not sent), and a sender listening all that time drew 15.7 mA for it. In a
# longer gap other senders find the channel free and collide with the ACK: at 25 ms (until session 9) a fifth of
# the 30-hop chain's ACKs in its cold start (docs/benchmarks.md, "Session 8, chain" and "Session 9, chain"). Knowing
# when the ACK comes, the sender's receiver sleeps until ACK_GUARD_MS before it and gives up when no carrier
# has come ACK_GUARD_MS after it (the simulator charges that wait: energy.ACK_WAIT_S).
ACK_DELAY_MS = const(12)
ACK_GUARD_MS = const(2)  # both ends count whole ms ticks, and the ACK's transmitter calibrates (0.8 ms) first
MAX_ATTEMPTS = const(5)  # transmissions per hop: first try and four retries
CCA_RETRIES = const(4)  # busy channel: back off and listen again this many times
# Routers one level up (the flood's forwarders into our slot) from which a router samples a second broadcast
# slot. Measured (240 modules): a second-ring module hears a median of 15 first-ring routers in rural and 21
# in the block, each heard forwarder of its slot overlapping five to ten others (rural seed 1: of 176 second-
# ring modules in the first flooded slot, 100 heard a forwarder 15 dB above the noise and none 10 dB above
# the rest); on the 30-hop chain a router hears the 8 of the house before, whose flood gets through.
DENSE_FORWARDERS = const(9)
# The second sample's slot is that of the depth this much deeper: half a cycle after the first, free where
# trees are shallow (block, rural: depths up to 4), and on the chain five houses away from the routers
# whose first slot it is.
SECOND_SLOT = const(5)
# The channel plan in 433.05-434.79 MHz: CHANNELS channels CHANNEL_SPACING_KHZ apart from CHANNEL_BASE_KHZ
# (firmware/common/cc1101.py: FREQ, CHANNR, MDMCFG1/0), 433.12-434.52 MHz, each signal's ~80 kHz (38.4 kBaud,
# 20 kHz deviation) inside the band. 200 kHz and not 100: the receiver's 101 kHz filter then leaves the next
# channel outside its skirt, and its image (2 x the 152 kHz IF) falls between channels.
CHANNELS = const(8)
CHANNEL_BASE_KHZ = const(433120)
CHANNEL_SPACING_KHZ = const(200)
BROADCAST_CHANNEL = const(4)  # 433.92 MHz, the band's centre, where every radio sat before the plan
HASH_MUL = const(40503)  # Knuth's 16-bit multiplicative hash: consecutive addresses land far apart


def airtime_us(frame, preamble_ms=None):
    """Time on air of a sealed frame in microseconds, as the simulator's channel counts it.

    Frames towards a sleeping router carry a wake preamble: ``preamble_ms``, by default the
    shortest (wake_preamble_ms); 0 for the frame alone.
    """
    n = len(frame) + PHY_OVERHEAD
    if preamble_ms is None:
        preamble_ms = wake_preamble_ms(frame)
    return n * 125000 // (BITRATE // 64) + preamble_ms * 1000  # n * 8 bits * 1e6 / BITRATE


def wake_preamble_ms(frame):
    """The preamble that goes before ``frame`` to wake its sleeping receiver at its sample.

    None for acknowledgements (the sender is still listening), frames that
    follow another in a burst (F_FOLLOWS: their receivers stay awake while the
    channel is busy) and frames to the concentrator (it always listens).
    """
    kind = frame[3] & 0x0F
    link_dst = frame[7] | (frame[8] << 8)
    return 0 if kind == T_ACK or link_dst == CONCENTRATOR or frame[3] & F_FOLLOWS else WAKE_PREAMBLE_MS


def airtime_ms(frame, preamble_ms=None):
    """Time on air rounded up to whole ms, as the sender's duty-cycle meter books it."""
    return (airtime_us(frame, preamble_ms) + 999) // 1000


def guarded_preamble_ms(frame, guard_ms):
    """The wake preamble before ``frame`` when the receiver's sample may be ``guard_ms`` either way of where
    the sender expects it (a rendezvous error beyond CLOCK_ERROR_MS: rendezvous.guard); 0 for frames
    that need none (wake_preamble_ms)."""
    base = wake_preamble_ms(frame)
    return base + 2 * guard_ms if base else 0


def unicast_phase(addr):
    """Where in the first cycle router ``addr`` samples for unicasts: a hash of its address.

    Spread over the whole cycle so that senders to different routers, often
    hidden from each other, rarely aim at the same few milliseconds; any
    neighbour computes it from the address, nothing is exchanged.
    """
    return ((addr * HASH_MUL) & 0xFFFF) * (CYCLE_MS - CONTENTION_MS) >> 16


def unicast_channel(addr):
    """The channel router ``addr`` samples for unicasts, and acknowledges on: any but BROADCAST_CHANNEL, by
    its address, so that a house's modules (numbered in a row) sit on different ones."""
    ch = addr % (CHANNELS - 1)
    return ch + 1 if ch >= BROADCAST_CHANNEL else ch


def frame_channel(frame):
    """The channel ``frame`` goes on: beacons and broadcasts on BROADCAST_CHANNEL, a unicast on its receiver's
    channel, an acknowledgement on its sender's (the channel of the frame it answers)."""
    link_dst = frame[7] | (frame[8] << 8)
    if link_dst == BROADCAST:
        return BROADCAST_CHANNEL
    if frame[3] & 0x0F == T_ACK:
        return unicast_channel(frame[5] | (frame[6] << 8))
    return unicast_channel(link_dst)


def unicast_wait(addr, net_phase_ms):
    """Milliseconds from now (``net_phase_ms`` into the superframe) until a frame to router ``addr`` starts:
    SAMPLE_LEAD_MS before its sample for unicasts (the sender adds 0-CONTENTION_MS).

    The concentrator never sleeps: frames to it go at once.
    """
    if addr == CONCENTRATOR:
        return 0
    return (unicast_phase(addr) - SAMPLE_LEAD_MS - net_phase_ms) % SUPERFRAME_MS


def slot_phase(depth):
    """Where in the superframe routers at ``depth`` sample for beacons and broadcasts (second cycle)."""
    return (depth * SLOT_MS) % CYCLE_MS + CYCLE_MS


def slot_wait(depth, net_phase_ms):
    """Milliseconds from now until a beacon or broadcast to routers at ``depth`` starts: SAMPLE_LEAD_MS before
    their slot's sample (the sender adds 0-CONTENTION_MS)."""
    return (slot_phase(depth) - SAMPLE_LEAD_MS - net_phase_ms) % SUPERFRAME_MS


def broadcast_depths(depth, dense):
    """The depths whose broadcast slots a router at ``depth`` samples: its own, and if ``dense`` (it hears
    DENSE_FORWARDERS or more routers one level up) the second slot too."""
    return (depth, depth + SECOND_SLOT) if dense else (depth,)
