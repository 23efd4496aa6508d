"""The D100FC metering core on CPython: pulses, tariffs, hourly reports, checkpoints, commands."""

import pytest

from firmware.d100fc import calendar_blob
from firmware.d100fc.errors import E_FORMAT, E_OVERLAP, E_PULSE_CONST, E_REFERENCE, E_TARIFF, ConfigError
from firmware.d100fc.module import Module
from firmware.d100fc.settings import KIND_CALENDAR, KIND_CHANNELS, encode_channels
from protocol import messages as m
from tests.d100fc_scenario import config, decoded, make, run, two_tariff_calendar
from firmware.common.benchhal import BenchHAL, RecordingUplink

# 2026-06-01 (a Monday) 00:00 UTC
MONDAY = 1780272000


def chunks(kind, blob_id, blob, seq=100):
    out = []
    step = m.ConfigChunk.TAIL_MAX
    for off in range(0, len(blob), step):
        out.append(m.ConfigChunk(seq + off, kind, blob_id, off, len(blob), blob[off:off + step]).encode())
    return out


def send_blob(mod, kind, blob, blob_id=1):
    acks = [m.decode(mod.on_downlink(c)) for c in chunks(kind, blob_id, blob)]
    return acks[-1]


def test_pulses_go_to_the_tariff_in_force_and_totals_add_up(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY + 5 * 3600, calendar=two_tariff_calendar())
    # 05:00 UTC = 07:00 CEST: day tariff starts at once; run to 21:30 UTC = 23:30 CEST (night)
    assert mod.tariff == 1
    sent = run(hal, mod, 16 * 3600 + 1800, rates=(1000, 0, 0), step_ms=500)
    regs = mod.obis_registers(0)
    assert regs["1-0:1.8.0"] == 1000 + sent[0]
    assert regs["1-0:1.8.0"] == sum(v for k, v in regs.items() if not k.endswith(".0"))
    # 16 h of day tariff at one pulse a second, the last half hour on night tariff
    assert regs["1-0:1.8.1"] == 1000 + 16 * 3600
    assert regs["1-0:1.8.2"] == 1800


def test_hourly_reports_carry_totals_and_two_deltas(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    run(hal, mod, 3 * 3600 + 10, rates=(2000, 4000, 0), step_ms=1000)
    hourly = decoded(up, m.Hourly)
    assert [h.hour for h in hourly] == [MONDAY // 3600 + i for i in (1, 2, 3)]
    last = hourly[-1]
    assert last.totals[0] == mod.registers.total(0) - (mod.registers.this_hour[0])
    assert last.delta(0, 1) == 1800 and last.delta(0, 2) == 1800 and last.delta(1, 1) == 900
    assert last.tariff & 0x0F == 1 and last.channel_mask() == 0b111


def test_a_reboot_restores_the_last_checkpoint(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    run(hal, mod, 1000, rates=(1000, 0, 0), step_ms=1000)
    mod.power_fail()
    saved = mod.registers.total(0)
    hal2 = BenchHAL(str(tmp_path), hal.unix_time())
    mod2 = Module(hal2, config(), RecordingUplink())
    mod2.boot()
    assert mod2.registers.total(0) == saved == 1000 + 1000
    assert mod2.restarts == 2
    assert mod2.events.latest(2)[-1][1] == m.EV_POWER_RESTART


def test_bounce_is_rejected(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    for _ in range(100):
        hal.advance(ms=10)
        hal.pulse(0)
        hal.advance(ms=2)  # contact bounce 2 ms after the edge, inside the 5 ms debounce
        hal.pulse(0)
    mod.tick()
    assert mod.registers.total(0) == 1000 + 100


def test_penalty_register_takes_pulses_above_the_contract(tmp_path):
    chans = config()["channels"]
    chans[0]["contract"] = 1000  # pulses per hour
    hal, up, mod = make(str(tmp_path), MONDAY, channels=chans)
    run(hal, mod, 3600, rates=(1000, 0, 0), step_ms=1000)
    assert mod.register(0, 9) == 3600 - 1000
    assert mod.register(0, 1) == 1000 + 1000


def test_a_passive_calendar_activates_at_its_time(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY + 12 * 3600)
    ack = send_blob(mod, KIND_CALENDAR, calendar_blob.encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 3)]},
                                                         activation=MONDAY + 13 * 3600))
    assert (ack.status, ack.detail) == (m.ST_OK, 2)
    run(hal, mod, 1800, rates=(1000, 0, 0), step_ms=1000)
    assert mod.tariff == 1
    run(hal, mod, 3600, rates=(1000, 0, 0), step_ms=1000)
    assert mod.tariff == 3 and mod.register(0, 3) == 1800


@pytest.mark.parametrize("blob,code", [
    (calendar_blob.encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 5)]}), E_TARIFF),
    (calendar_blob.encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 1), (600, 2), (600, 1)]}), E_OVERLAP),
    (calendar_blob.encode([(1, 1, 1)], {1: bytes([1] * 6 + [4])}, {1: [(0, 1)]}), E_REFERENCE),
    (calendar_blob.encode([(3, 1, 1), (2, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 1)]}), E_OVERLAP),
    (b"nonsense", E_FORMAT),
])
def test_a_bad_calendar_is_refused_and_the_old_one_kept(tmp_path, blob, code):
    hal, up, mod = make(str(tmp_path), MONDAY + 12 * 3600, calendar=two_tariff_calendar())
    before = mod.calendar
    ack = send_blob(mod, KIND_CALENDAR, blob)
    assert (ack.status, ack.detail) == (m.ST_REFUSED, code)
    assert mod.calendar is before
    ev = decoded(up, m.Event)[-1]
    assert (ev.code, ev.value) == (m.EV_CONFIG_REFUSED, code)


def test_zero_pulse_constant_is_refused(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    blob = bytearray(encode_channels([("electricity", 3200, 5, 0)]))
    blob[3:7] = bytes(4)
    ack = send_blob(mod, KIND_CHANNELS, bytes(blob))
    assert (ack.status, ack.detail) == (m.ST_REFUSED, E_PULSE_CONST)
    with pytest.raises(ConfigError):
        Module(hal, config(channels=[{"resource": "water", "pulse_const": 0}]), up)


def test_backfill_serves_the_archive_by_range(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    run(hal, mod, 6 * 3600 + 5, rates=(3000, 0, 0), step_ms=1000)
    live = {h.hour: h for h in decoded(up, m.Hourly)}
    del up.sent[:]
    first = MONDAY // 3600 + 3
    ack = m.decode(mod.on_downlink(m.BackfillReq(9, first, 3).encode()))
    assert (ack.seq, ack.status, ack.detail) == (9, m.ST_OK, 3)
    assert all(backfill for _, _, backfill in up.sent)
    for h in decoded(up, m.Hourly):
        assert h.totals == live[h.hour].totals and h.deltas == live[h.hour].deltas


def test_garbage_downlink_gets_a_bad_value_ack(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    ack = m.decode(mod.on_downlink(b"\x10\x05\x00\x01"))
    assert (ack.seq, ack.status) == (5, m.ST_BAD_VALUE)
    assert m.decode(mod.on_downlink(m.Diag(1, 2, 3, 4, 5, 6, 7, 8, 9).encode())).status == m.ST_UNKNOWN_COMMAND


def test_a_channel_setup_blob_applies_and_survives_a_reboot(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    blob = encode_channels([("electricity", 1000, 5, 100), ("water", 10, 50, 0), ("heat", 1, 5, 0)])
    ack = send_blob(mod, KIND_CHANNELS, blob)
    assert (ack.status, ack.detail) == (m.ST_OK, 1)
    run(hal, mod, 600, rates=(1000, 0, 0), step_ms=1000)
    assert mod.register(0, 9) == 600 - 100
    hal2 = BenchHAL(str(tmp_path), hal.unix_time())
    mod2 = Module(hal2, config(), RecordingUplink())
    mod2.boot()
    assert mod2.channels[2] == ("heat", 1, 5, 0) and mod2.registers.contract[0] == 100
    assert mod2.obis_registers(2)["6-0:1.0.0"] == 50


def test_channel_resource_codes_follow_the_obis_order():
    from firmware.d100fc.settings import RESOURCE_CODES
    from protocol import obis
    assert RESOURCE_CODES == obis.RESOURCES


def test_a_re_sent_command_is_answered_again_not_run_again(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    run(hal, mod, 2 * 3600 + 5)
    now = hal.unix_time()
    sync = m.TimeSync(41, now, 0).encode()
    first = mod.on_downlink(sync)
    assert m.decode(first).status == m.ST_OK
    hal.advance(30)  # the ACK was lost; the collector re-sends the same frame 30 s later
    assert mod.on_downlink(sync) == first
    assert hal.unix_time() == now + 30  # the clock was not set back by the re-sent sync
    backfill = m.BackfillReq(42, MONDAY // 3600 + 1, 2).encode()
    sent = len(up.sent)
    assert m.decode(mod.on_downlink(backfill)).detail == 2
    assert m.decode(mod.on_downlink(backfill)).detail == 2
    assert len(up.sent) - sent == 2  # two archived hours, sent once
    # a new command with a recycled seq (the collector restarted) is a new command and runs
    assert m.decode(mod.on_downlink(m.TimeSync(41, now + 100, 0).encode())).status == m.ST_OK
    assert hal.unix_time() == now + 100
