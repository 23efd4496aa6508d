"""Load limits, the relay, remote disconnect and ripple-control groups; every relay move is an event."""

from firmware.d100fc.loadcontrol import CAUSE_GROUP, CAUSE_LIMIT, CAUSE_REMOTE, LoadControl
from protocol import messages as m
from tests.d100fc_scenario import decoded, make, run

MONDAY = 1780272000


def relay_events(up):
    return [(e.value >> 1, e.value & 1) for e in decoded(up, m.Event) if e.code == m.EV_RELAY_SWITCHED]


def test_the_stricter_of_supplier_and_customer_limits_wins():
    lc = LoadControl()
    lc.set_limit(0, 0, 0, 5000)  # supplier, every tariff
    lc.set_limit(1, 0, 2, 3000)  # customer, tariff 2 only
    assert lc.limit(0, 1) == 5000 and lc.limit(0, 2) == 3000
    lc.set_limit(1, 0, 0, 4000)
    assert lc.limit(0, 1) == 4000 and lc.limit(1, 1) == 0


def test_limit_exceeded_sheds_then_reconnects_with_hysteresis(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY, relay={"hysteresis_pct": 10, "reconnect_delay_s": 300})
    assert m.decode(mod.on_downlink(m.SetLimit(1, 0, 0, 0, 3000).encode())).status == m.ST_OK
    run(hal, mod, 180, rates=(1000, 0, 0), step_ms=1000)  # 3600 pulses/h > 3000
    assert hal.relay_closed is False
    assert [e.code for e in decoded(up, m.Event)][-2:] == [m.EV_LIMIT_EXCEEDED, m.EV_RELAY_SWITCHED]
    run(hal, mod, 600, rates=(1250, 0, 0), step_ms=250)  # 2880/h: under the limit but not by 10 %
    assert hal.relay_closed is False
    run(hal, mod, 240, rates=(2000, 0, 0), step_ms=1000)  # 1800/h: well under
    assert hal.relay_closed is True
    assert relay_events(up) == [(CAUSE_LIMIT, 0), (CAUSE_LIMIT, 1)]


def test_manual_policy_waits_for_a_remote_reconnect(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY, relay={"policy": "manual"})
    mod.on_downlink(m.SetLimit(1, 0, 0, 1, 1000).encode())
    run(hal, mod, 120, rates=(1000, 0, 0), step_ms=1000)
    run(hal, mod, 900, step_ms=1000)  # no load at all, still open
    assert hal.relay_closed is False
    assert m.decode(mod.on_downlink(m.Relay(2, m.RELAY_CLOSE, 0).encode())).status == m.ST_OK
    assert hal.relay_closed is True
    assert relay_events(up) == [(CAUSE_LIMIT, 0), (CAUSE_REMOTE, 1)]


def test_remote_disconnect_survives_a_reboot(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    mod.on_downlink(m.Relay(3, m.RELAY_OPEN, 7).encode())
    assert hal.relay_closed is False
    hal2, up2, mod2 = make(str(tmp_path), MONDAY + 60)
    assert hal2.relay_closed is False
    mod2.on_downlink(m.Relay(4, m.RELAY_AUTO, 0).encode())
    assert hal2.relay_closed is True
    assert relay_events(up) == [(CAUSE_REMOTE, 0)] and relay_events(up2) == [(CAUSE_REMOTE, 1)]


def test_group_shed_for_a_duration_then_restore(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    assert m.decode(mod.on_downlink(m.SetGroups(5, bytes([7, 0, 9, 1])).encode())).status == m.ST_OK
    mod.on_broadcast(m.GroupCmd(6, 8, 1, 600).encode())  # not our group
    assert hal.relay_closed is True
    mod.on_broadcast(m.GroupCmd(7, 0x109, 1, 600).encode())
    assert hal.relay_closed is False
    run(hal, mod, 590, step_ms=1000)
    assert hal.relay_closed is False
    run(hal, mod, 20, step_ms=1000)
    assert hal.relay_closed is True
    mod.on_broadcast(m.GroupCmd(8, 7, 1, 0).encode())  # until restored
    run(hal, mod, 3600, step_ms=5000)
    assert hal.relay_closed is False
    assert m.decode(mod.on_downlink(m.GroupCmd(9, 7, 0, 0).encode())).status == m.ST_OK  # or one by one
    assert hal.relay_closed is True
    assert relay_events(up) == [(CAUSE_GROUP, 0), (CAUSE_GROUP, 1), (CAUSE_GROUP, 0), (CAUSE_GROUP, 1)]
