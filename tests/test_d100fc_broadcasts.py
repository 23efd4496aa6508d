"""What a module takes from a broadcast: uTESLA-tagged commands once it holds an anchor, limited
untagged ones before (firmware/d100fc/broadcasts.py, docs/firmware.md "What a broadcast may do")."""

from hypothesis import given
from hypothesis import strategies as st

from firmware.d100fc.broadcasts import CLOCK_SLEW_S
from protocol import messages as m
from protocol import tesla
from tests.d100fc_scenario import ChainKeeper, decoded, make, run
from tests.protocol_strategies import examples_settings

MONDAY = 1780272000
GROUP = 7


def codes(up):
    return [e.code for e in decoded(up, m.Event)]


def refused(up):
    return [e.value for e in decoded(up, m.Event) if e.code == m.EV_BROADCAST_REFUSED]


def commissioned(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    assert m.decode(mod.on_downlink(m.SetGroups(1, bytes([GROUP, 0])).encode())).status == m.ST_OK
    agent = ChainKeeper(hal, MONDAY - 3600)
    assert m.decode(mod.on_downlink(agent.anchor())).status == m.ST_OK
    return hal, up, mod, agent


def shed(seq=2):
    return m.GroupCmd(seq, GROUP, 1, 600)


def test_a_tagged_ripple_command_acts_only_when_its_key_is_disclosed(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    i = agent.now_interval()
    mod.on_broadcast(agent.tagged(shed()))
    run(hal, mod, 10)
    assert hal.relay_closed is True  # waiting for K_i
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(agent.disclose(i))
    assert hal.relay_closed is False and not refused(up)


def test_a_forged_tag_a_late_copy_and_an_untagged_command_are_refused(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    i = agent.now_interval()
    mod.on_broadcast(agent.tagged(shed(), key=bytes(16)))  # a thief's guess at K_i
    mod.on_broadcast(shed().encode())  # the network key alone no longer opens relays
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(agent.disclose(i))
    # K_i is public now: a broadcast tagged with it, made after the fact, comes too late
    mod.on_broadcast(agent.tagged(shed(3), interval=i))
    mod.on_broadcast(agent.disclose(i))
    assert hal.relay_closed is True
    assert sorted(refused(up)) == sorted([m.GroupCmd.TYPE, m.Tagged.TYPE, m.Tagged.TYPE])


def test_a_key_that_does_not_hash_to_the_anchor_changes_nothing(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    i = agent.now_interval()
    forged = bytes(16)
    mod.on_broadcast(agent.tagged(shed(), key=forged))
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    anchor = (mod.broadcasts.anchor.interval, mod.broadcasts.anchor.key)
    mod.on_broadcast(m.Disclose(i, forged).encode())
    assert (mod.broadcasts.anchor.interval, mod.broadcasts.anchor.key) == anchor
    assert hal.relay_closed is True and len(mod.broadcasts.pending) == 1  # the genuine key may still come


def test_a_lost_disclosure_is_bridged_by_the_next_one(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    first = agent.now_interval()
    mod.on_broadcast(agent.tagged(m.GroupCmd(2, GROUP, 1, 0)))
    hal.advance(20 * tesla.INTERVAL_S)  # K_first's disclosure never arrives
    second = agent.now_interval()
    mod.on_broadcast(agent.tagged(m.GroupCmd(3, GROUP + 1, 1, 0)))
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(agent.disclose(second))
    assert hal.relay_closed is False and mod.broadcasts.anchor.interval == second and not mod.broadcasts.pending


def test_a_tagged_time_sync_sets_the_clock_whole_counting_the_wait_for_its_key(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    true_time = hal.unix_time() + 3600  # an hour off: more than an untagged broadcast may move it
    i = agent.now_interval()
    mod.on_broadcast(agent.tagged(m.TimeSync(1, true_time, 0)))
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(agent.disclose(i))
    assert hal.unix_time() == true_time + tesla.DISCLOSE_AFTER * tesla.INTERVAL_S
    assert m.EV_CLOCK_LIMITED not in codes(up)


def test_the_agents_daily_anchor_of_the_same_chain_keeps_what_waits_for_its_key(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    i = agent.now_interval()
    mod.on_broadcast(agent.tagged(shed()))
    hal.advance(2 * tesla.INTERVAL_S)
    assert m.decode(mod.on_downlink(agent.anchor(seq=2))).status == m.ST_OK
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(agent.disclose(i))
    assert hal.relay_closed is False


def test_the_anchor_survives_a_reboot(tmp_path):
    hal, up, mod, agent = commissioned(tmp_path)
    i = agent.now_interval()
    mod.on_broadcast(agent.tagged(shed()))
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(agent.disclose(i))
    _, up2, mod2 = make(str(tmp_path), hal.unix_time())
    assert (mod2.broadcasts.anchor.interval, mod2.broadcasts.anchor.key) == (i, agent.keys[i])
    mod2.on_broadcast(m.GroupCmd(9, GROUP, 0, 0).encode())
    assert refused(up2) == [m.GroupCmd.TYPE]


NEAR = st.integers(600, 1400)  # intervals around the present (the anchor is at ~700)
FORGERIES = st.one_of(
    st.binary(max_size=39),
    st.builds(lambda i, t, msg: m.Tagged(i, t, msg.encode()).encode(), NEAR, st.binary(min_size=8, max_size=8),
              st.sampled_from([shed(), m.TimeSync(1, MONDAY + 7200, 0)])),
    st.builds(lambda i, k: m.Disclose(i, k).encode(), NEAR, st.binary(min_size=16, max_size=16)),
    st.sampled_from([shed().encode(), m.TimeSync(1, MONDAY + 7200, 0).encode(), m.Relay(1, 0, 0).encode()]))


@given(st.lists(FORGERIES, max_size=6))
@examples_settings(60)
def test_no_broadcast_without_the_chains_keys_moves_the_relay_or_the_clock(tmp_path_factory, payloads):
    hal, up, mod, agent = commissioned(tmp_path_factory.mktemp("m"))
    clock = hal.unix_time()
    for p in payloads:
        mod.on_broadcast(p)
        hal.advance(tesla.INTERVAL_S)
    assert hal.relay_closed is True and hal.unix_time() == clock + len(payloads) * tesla.INTERVAL_S


def test_a_broadcast_may_not_switch_a_relay_set_a_limit_or_change_the_calendar(tmp_path):
    # A broadcast proves only the network key, which every module holds: whoever extracts it
    # from one module must not be able to open every relay in the district.
    hal, up, mod = make(str(tmp_path), MONDAY)
    for msg in (m.Relay(1, m.RELAY_OPEN, 0), m.SetLimit(2, 0, 0, 0, 1), m.SetGroups(3, bytes([7, 0])),
                m.BackfillReq(4, MONDAY // 3600 - 2, 2)):
        assert mod.on_broadcast(msg.encode()) is None
    assert hal.relay_closed is True and mod.load.groups == []
    refused = [e.value for e in decoded(up, m.Event) if e.code == m.EV_BROADCAST_REFUSED]
    assert refused == [m.Relay.TYPE, m.SetLimit.TYPE, m.SetGroups.TYPE, m.BackfillReq.TYPE]
    assert m.decode(mod.on_downlink(m.Relay(5, m.RELAY_OPEN, 0).encode())).status == m.ST_OK  # one by one it may
    assert hal.relay_closed is False


def test_a_broadcast_moves_a_set_clock_by_at_most_the_slew_limit_a_day(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    start = hal.unix_time()
    mod.on_broadcast(m.TimeSync(1, start + 3600, 0).encode())  # a forger's hour forward
    assert hal.unix_time() - start == CLOCK_SLEW_S
    mod.on_broadcast(m.TimeSync(2, hal.unix_time() + 3600, 0).encode())  # and again: nothing left
    assert hal.unix_time() - start == CLOCK_SLEW_S
    limited = [e.value for e in decoded(up, m.Event) if e.code == m.EV_CLOCK_LIMITED]
    assert limited == [3600]  # once for the run of refused steps, not for every broadcast
    mod.on_broadcast(m.TimeSync(3, hal.unix_time() - 2 * CLOCK_SLEW_S, 0).encode())  # back is allowed
    assert hal.unix_time() - start == -CLOCK_SLEW_S
    run(hal, mod, 86400, step_ms=60000)  # a day later the allowance has come back
    before = hal.unix_time()
    mod.on_broadcast(m.TimeSync(4, before + 3600, 0).encode())
    assert hal.unix_time() - before == CLOCK_SLEW_S
    ack = m.decode(mod.on_downlink(m.TimeSync(5, before + 7200, 0).encode()))  # under the module key: any step
    assert ack.status == m.ST_OK and hal.unix_time() == before + 7200


def test_routine_broadcast_syncs_that_jitter_around_true_time_are_never_limited(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    true_time = hal.unix_time()
    for k in range(24 * 7):  # a week of hourly syncs, each 0-9 s late from its travel; the crystal 23 ppm fast
        run(hal, mod, 3600, step_ms=60000)
        true_time += 3600
        if k % 12 == 0:
            hal.set_unix_time(hal.unix_time() + 1)
        mod.on_broadcast(m.TimeSync(k, true_time - k % 10, 0).encode())
    assert abs(hal.unix_time() - true_time) < 10
    assert m.EV_CLOCK_LIMITED not in codes(up)


def test_a_clock_never_set_takes_a_broadcasts_time_whole(tmp_path):
    hal, up, mod = make(str(tmp_path), 0)
    mod.on_broadcast(m.TimeSync(1, MONDAY, 0).encode())
    assert abs(hal.unix_time() - MONDAY) <= 1 and m.EV_CLOCK_LIMITED not in codes(up)
