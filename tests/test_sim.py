"""The simulator's models and its command: channel physics, energy, metrics, the CLI, run_district."""

import json

import numpy as np
import pytest

from balans.cli import main
from firmware.common.mesh.mac import BROADCAST_CHANNEL, CHANNELS, frame_channel, unicast_channel
from protocol.frame import BROADCAST, T_ACK, T_DATA, Frame, seal_frame
from simulator import radio, scenarios
from simulator.energy import Meter, battery_years
from simulator.metrics import _max_hour_duty, _quantile
from simulator.network import run_district
from simulator.world import World

KEYS = ("delivery_ratio", "daily_completeness", "broadcast_median_s", "broadcast_p95_s", "broadcast_max_s",
        "broadcast_reached", "broadcast_reached_40s", "relayed_per_day_max", "busiest_current_ua", "battery_years_min",
        "duty_cycle_max", "control_overhead", "join_time_s", "wall_s")


def test_reception_falls_with_sinr_and_frame_length():
    assert radio.prr(20, 60) > 0.999
    assert radio.prr(10, 60) < radio.prr(12, 60) < radio.prr(14, 60)
    assert radio.prr(11, 70) < radio.prr(11, 20)
    assert radio.prr(0, 60) < 0.001


def test_capture_a_strong_frame_survives_a_weak_one_equal_ones_do_not():
    ch = radio.Channel(np.full((2, 2), 80.0), seed=1)
    strong = sum(ch.received(-70.0, [-85.0], 60) for _ in range(200))
    equal = sum(ch.received(-70.0, [-70.0], 60) for _ in range(200))
    assert strong == 200 and equal == 0


def test_slow_variation_is_reproducible_and_bounded():
    a, b = (radio.Channel(np.full((3, 3), 90.0), seed=4) for _ in range(2))
    va = [a.slow(0, 1, t) for t in range(0, 86400, 600)]
    vb = [b.slow(1, 0, t) for t in range(0, 86400, 600)]
    assert va == vb  # symmetric per link, the same per seed
    assert 0.5 < np.std(va) < 3 * radio.SLOW_DB


def test_chain_blocks_shortcuts_so_it_is_as_deep_as_its_houses():
    _, loss = scenarios.chain(60, hops=30)
    # a house two doors away is 25 dB more lost than a neighbour one door away would be at that range
    assert loss[1, 5] - loss[1, 3] > 25.0


def test_battery_life_of_the_researchs_anchor_currents():
    assert 10.0 < battery_years(34.0) < 10.2  # the research note: <= 34 uA average for 10 years
    assert battery_years(300.0) < 1.5


def test_meter_adds_states_to_the_idle_current():
    m = Meter()
    idle = m.average_ua(86400)
    m.transmit(0.02, True)
    m.receive(0.02)
    assert m.average_ua(86400) > idle


def test_meter_breaks_the_steady_state_current_down_by_what_it_went_to():
    m = Meter()
    m.transmit(0.02, True, "tx unicast", 0.011)  # before the window: the cold start, not in the breakdown
    m.settle(100.0)
    m.receive(0.025, "rx unicast", 0.011)
    m.transmit(0.01, False, "tx ack")
    m.wake()
    parts = m.breakdown_ua(100.0 + 86400)
    assert sum(parts.values()) == pytest.approx(m.average_ua(100.0 + 86400))
    assert parts["rx wake preamble"] == pytest.approx(0.011 * 15.7 * 1000 / 86400)
    assert parts["rx unicast"] == pytest.approx(0.014 * 15.7 * 1000 / 86400)
    assert "tx unicast" not in parts and "tx wake preamble" not in parts
    assert {"tx ack", "mcu handling a frame", "mcu preparing a transmission", "mcu timer wake"} <= set(parts)


def test_meter_charges_a_second_broadcast_sample_only_while_it_lasts():
    from simulator.energy import SECOND_SAMPLE_UA

    m = Meter()
    m.second_sample(0.0, True)  # dense from the start: the cold start's share is booked apart
    m.settle(3600.0)
    m.second_sample(3600.0 + 43200, False)  # half the steady-state day, then no longer
    parts = m.breakdown_ua(3600.0 + 86400)
    assert parts["idle: second broadcast sample"] == pytest.approx(SECOND_SAMPLE_UA / 2)
    assert m.average_ua(3600.0 + 86400) == pytest.approx(Meter().average_ua(86400) + SECOND_SAMPLE_UA / 2)


def test_simulate_prints_the_busiest_relays_charge_by_what_it_went_to(capsys):
    assert main(["simulate", "--scenario", "chain", "--nodes", "8", "--days", "0.1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    parts = figures["busiest"]["charge_ua"]
    assert sum(parts.values()) == pytest.approx(figures["busiest_current_ua"], abs=0.1)
    assert parts["tx unicast"] > 0 and parts["rx ack"] > 0 and parts["rx wake preamble"] > 0


def test_duty_and_quantile_helpers():
    assert _max_hour_duty({0: 36.0, 30: 36.0, 90: 36.0}) == pytest.approx(72.0 / 3600)
    assert _quantile([1, 2, 3, 4], 0.5) == 2 and _quantile([], 0.5) is None


def test_simulate_prints_every_key_of_the_issue(capsys):
    assert main(["simulate", "--scenario", "block", "--nodes", "6", "--days", "0.05", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert key in figures
    assert figures["joined"] == 1.0 and figures["duty_cycle_max"] <= 0.1
    assert figures["broadcast_reached"] is None  # 72 minutes: no ripple command was due


def test_simulate_refuses_nonsense(capsys):
    assert main(["simulate", "--nodes", "0"]) == 1


def test_run_district_hands_link_bytes_and_truth():
    seen = []
    d = run_district(nodes=3, days=0.1, seed=2, on_link_bytes=seen.append)
    try:
        assert sum(len(b) for b in seen) > 0
        truth = d.truth()
        assert truth and all(v > 0 for v in truth.values())
        assert {addr for addr, _, _ in truth} == {1, 2, 3}
    finally:
        d.close()


def test_a_broadcast_counts_in_time_only_within_its_keys_disclosure():
    from simulator.metrics import BROADCAST_IN_TIME_S

    d = run_district(nodes=3, days=0.1, seed=2)
    try:
        rec = d.recorder
        rec.broadcasts = {b"ripple": 100.0}
        rec.heard = {b"ripple": {1: 100.0 + BROADCAST_IN_TIME_S, 2: 100.0 + BROADCAST_IN_TIME_S + 1}}  # 3: never
        figures = d.figures()
        assert figures["broadcast_reached"] == pytest.approx(2 / 3)
        assert figures["broadcast_reached_40s"] == pytest.approx(1 / 3)
        assert figures["broadcast_max_s"] == pytest.approx(BROADCAST_IN_TIME_S + 1)
    finally:
        d.close()


def test_bench_radio_measures_the_receivers_time_per_received_unicast():
    import types

    from firmware.bench import radio as bench_radio
    from firmware.common.mesh.mac import WAKE_PREAMBLE_MS

    f = bench_radio(types.SimpleNamespace(quick=True))
    assert f["woken_heard"] == 1.0
    # on at least from its sample (1-8 ms into the wake preamble) to the frame's end, and no more than the
    # simulator charges: asleep while the station checks the frame and its ACK waits for ACK_DELAY_MS
    low = f["sim_rx_ms_per_received_unicast"] - WAKE_PREAMBLE_MS + 3
    assert low <= f["rx_ms_per_received_unicast"] <= f["sim_rx_ms_per_received_unicast"]
    # a sender's receiver sleeps until its ACK is due instead of listening through the addressee's work
    assert f["rx_ms_per_unicast"] <= f["sim_rx_ms_per_unicast"] + 1


def test_a_clock_set_forward_closes_the_hour_on_the_new_clock():
    from simulator.network import District

    d = District("block", 3, 0.05, seed=1)
    node = d.world.nodes[1]
    closed = []
    new_hour = node.app._new_hour

    def close_hour(now):
        closed.append(node.hal.unix_seconds())
        new_hour(now)

    def step_forward(world, node):  # as a time sync does, from inside the node's step
        node.hal.set_unix_time(node.hal.unix_seconds() + 6)
        world.reschedule(node)

    node.app._new_hour = close_hour
    d.world.at(3000.0, step_forward, node)
    try:
        d.run()
    finally:
        d.close()
    boundary = (d.world.epoch // 3600 + 1) * 3600
    assert closed and boundary <= closed[0] < boundary + 1  # not 6 s late on its own clock


class Listening:
    """The least firmware a World node needs to hear frames: it listens all the time on one channel."""

    joined = True

    def __init__(self, channel):
        self.channel = channel

    def poll(self):
        pass

    def sample_phases(self):
        return ()

    def listen_channel(self):
        return self.channel

    def wakeup_in_ms(self):
        return None


def unicast(src, dst):
    f = Frame(0x4241, T_DATA, src, dst, 1, b"x" * 30)
    f.link_src, f.link_dst = src, dst
    return bytes(seal_frame(f, bytes(16)))


def two_exchanges_at_once(receivers):
    """Node 1 sends to receivers[0] and node 3 to receivers[1] at the same moment, a street apart (-85 dBm);
    returns how many of the two frames arrived."""
    w = World(np.full((10, 10), 95.0), seed=1, sigma_db=0.0, interference=0.0)
    for n in w.nodes[1:]:
        n.mesh = Listening(unicast_channel(n.addr))
        n.listen_channel = n.mesh.channel
        n.hal.radio_listen()
    assert w.transmit(w.nodes[1], unicast(1, receivers[0]), cca=False, preamble_ms=0)
    assert w.transmit(w.nodes[3], unicast(3, receivers[1]), cca=False, preamble_ms=0)
    w.run(1.0)
    return sum(len(w.by_addr[r].hal.rx) for r in receivers)


def test_exchanges_with_receivers_on_different_channels_go_side_by_side():
    assert unicast_channel(2) == unicast_channel(9) != unicast_channel(4)
    assert two_exchanges_at_once((2, 9)) == 0  # one channel: the two frames destroy each other
    assert two_exchanges_at_once((2, 4)) == 2  # two channels: 30 dB apart, both arrive


def test_carrier_sense_listens_on_the_frames_own_channel():
    w = World(np.full((10, 10), 95.0), seed=1, sigma_db=0.0, interference=0.0)
    assert w.transmit(w.nodes[1], unicast(1, 2), cca=False, preamble_ms=0)
    assert not w.transmit(w.nodes[3], unicast(3, 9), cca=True, preamble_ms=0)  # 9 samples 2's channel: busy
    assert w.transmit(w.nodes[5], unicast(5, 4), cca=True, preamble_ms=0)  # another channel: free


def test_every_module_samples_for_unicasts_off_the_broadcast_channel():
    channels = {unicast_channel(a) for a in range(0, 241)}
    assert BROADCAST_CHANNEL not in channels and channels == set(range(CHANNELS)) - {BROADCAST_CHANNEL}
    assert frame_channel(unicast(3, 7)) == unicast_channel(7)
    ack = bytearray(unicast(7, 3))
    ack[3] = (ack[3] & 0xF0) | T_ACK
    assert frame_channel(bytes(ack)) == unicast_channel(7)  # back on the channel of the frame it answers
    assert frame_channel(unicast(3, BROADCAST)) == BROADCAST_CHANNEL
