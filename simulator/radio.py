"""The 433 MHz channel: path loss, shadowing, noise, collisions and capture.

Received power = TX power - log-distance path loss - walls/floors (the
scenario's ``loss_db``) - static log-normal shadowing per link (sigma dB,
mostly symmetric, 1 dB asymmetric) - a slow per-link variation (an AR(1)
process with SLOW_DB spread and SLOW_TAU_S memory, standing in for doors,
vehicles and weather). A frame is received with the probability of a
non-coherent FSK receiver at its signal to interference-plus-noise ratio:
PRR = (1 - BER)^bits, BER = exp(-SINR/2)/2 (Zuniga & Krishnamachari's
transitional region follows from that). Overlapping frames add to the
interference, so a frame 6 dB or more above the rest usually survives
(capture) and equal ones destroy each other. Outside interference (car keys,
weather stations) occupies a share of the air in bursts. Frames on other channels
interfere and busy carrier sense CHANNEL_REJECTION_DB weaker.
"""

import math
import random

import numpy as np

TX_DBM = 10.0  # 10 mW e.r.p., the band's limit (ERC/REC 70-03 annex 1)
NOISE_DBM = -117.0  # thermal + noise figure in the 38.4 kBaud filter: 1 % PER at -104 dBm
# Carrier sense threshold: louder than this and the channel is busy. The CC1101's CARRIER_SENSE_ABS_THR at
# its lowest step (-7 dB from the MAGN_TARGET point, taken as -100 dBm), 10 dB above the noise floor: at -100
# dBm, rural's flood forwarders and copy senders, which collide at -100 to -115 dBm, did not hear each other
# (rural, 4 seeds: broadcast p95 23.6 -> 18.6 s). The board's driver (firmware/common/cc1101.py) sets
# AGCCTRL1 to 0x49 to match.
CCA_DBM = -107.0
HEARD_DBM = -125.0  # links weaker than this on average are never evaluated
SLOW_DB = 3.0  # spread of the slow variation
SLOW_STEP_S = 600.0  # the slow variation moves in 10-minute steps
SLOW_TAU_S = 3600.0  # and forgets its past over an hour
BURST_S = 0.05  # mean length of an outside-interference burst
BURST_DBM = (-112.0, -85.0)  # its power at a receiver, uniform
_NOISE_MW = 10.0 ** (NOISE_DBM / 10.0)
# How much weaker a frame on another channel of the plan (firmware/common/mesh/mac.py: 200 kHz apart) arrives
# through the receiver's 101 kHz channel filter, by channels apart: 0, 1 (200 kHz), 2 or more. Assumed between
# the CC1101's published selectivity figures (SWRS061: about 25 dB at 100 kHz, 50 dB and more of blocking at
# 1-2 MHz) and below them; its image, 2 x 152 kHz IF away, falls between channels. Both interference and
# carrier sense see it.
CHANNEL_REJECTION_DB = (0.0, 30.0, 40.0)


def rejection_db(a, b):
    """How much weaker a frame on channel ``a`` reaches a receiver tuned to channel ``b``."""
    return CHANNEL_REJECTION_DB[min(abs(a - b), 2)]


def prr(sinr_db, nbytes):
    """Packet reception ratio of an NC-FSK frame of ``nbytes`` (PHY overhead included)."""
    if sinr_db > 25.0:
        return 1.0
    ber = 0.5 * math.exp(-0.5 * 10.0 ** (sinr_db / 10.0))
    return (1.0 - ber) ** (8 * nbytes)


class Channel:
    def __init__(self, mean_loss_db, seed, sigma_db=6.0, interference=0.05):
        """``mean_loss_db``: n x n matrix of path + obstruction loss (dB) from the scenario."""
        self.n = len(mean_loss_db)
        rng = np.random.default_rng(seed)
        sym = rng.normal(0.0, sigma_db, (self.n, self.n))
        sym = np.triu(sym, 1)
        sym = sym + sym.T
        asym = rng.normal(0.0, 1.0, (self.n, self.n))
        self.mean_dbm = TX_DBM - np.asarray(mean_loss_db) - sym - asym
        np.fill_diagonal(self.mean_dbm, -300.0)
        self.interference = interference
        self._rng = random.Random(seed ^ 0x5EED)
        self._slow = {}  # (i, j) with i < j -> [step, value] of the link's slow variation
        self._decay = math.exp(-SLOW_STEP_S / SLOW_TAU_S)
        self.rebuild()

    def rebuild(self):
        """Neighbour lists: who can possibly hear whom (after a node moved, too)."""
        # receiver -> {sender: (mean dBm, the link's slow-variation state)}
        self.neighbours = [dict() for _ in range(self.n)]
        idx = np.argwhere(self.mean_dbm > HEARD_DBM)
        for s, r in idx:
            s, r = int(s), int(r)
            self.neighbours[r][s] = (float(self.mean_dbm[s, r]), self._link(s, r))
        self.audience = [sorted(r for r in range(self.n) if s in self.neighbours[r]) for s in range(self.n)]

    def move(self, node, mean_loss_row):
        """Node ``node`` now has path losses ``mean_loss_row`` to every other node."""
        shadow = self._rng.gauss(0.0, 6.0)
        for other in range(self.n):
            if other != node:
                p = TX_DBM - float(mean_loss_row[other]) - shadow
                self.mean_dbm[node, other] = self.mean_dbm[other, node] = p
        self.rebuild()

    def _link(self, a, b):
        """The slow-variation state of link a-b, shared by both directions: [step, value]."""
        key = (a, b) if a < b else (b, a)
        state = self._slow.get(key)
        if state is None:
            state = self._slow[key] = [None, 0.0]  # drawn at its first use
        return state

    def slow(self, a, b, t):
        """The slow variation of link a-b at time t (dB), advanced lazily and reproducibly."""
        return self._advance(self._link(a, b), t)

    def _advance(self, state, t):
        step = int(t // SLOW_STEP_S)
        if state[0] is None:
            value = self._rng.gauss(0.0, SLOW_DB)
        else:
            k = step - state[0]
            if k <= 0:  # this step, or (a frame queued behind a burst that crossed a step) an earlier one
                return state[1]
            d = self._decay ** k
            value = state[1] * d + self._rng.gauss(0.0, SLOW_DB * math.sqrt(1.0 - d * d))
        state[0] = step
        state[1] = value
        return value

    def power(self, sender, receiver, t):
        """Received power (dBm) at ``receiver`` of a frame from ``sender`` at time t, or None."""
        link = self.neighbours[receiver].get(sender)
        if link is None:
            return None
        state = link[1]
        if state[0] == int(t // SLOW_STEP_S):  # the common case, without a call: a million a simulated day
            return link[0] + state[1]
        return link[0] + self._advance(state, t)

    def outside_burst_dbm(self, airtime_s, boost=0.0):
        """Power of outside interference overlapping a frame, or None if the air was clean."""
        share = min(1.0, self.interference + boost)
        if share <= 0.0:
            return None
        p_hit = min(1.0, share * (1.0 + airtime_s / BURST_S))
        if self._rng.random() >= p_hit:
            return None
        return self._rng.uniform(*BURST_DBM)

    def received(self, signal_dbm, interferers_dbm, nbytes):
        """Whether a frame at ``signal_dbm`` survives noise and ``interferers_dbm`` (a list)."""
        noise_mw = _NOISE_MW
        for p in interferers_dbm:
            noise_mw += 10.0 ** (p / 10.0)
        sinr = signal_dbm - 10.0 * math.log10(noise_mw)
        return self._rng.random() < prr(sinr, nbytes)
