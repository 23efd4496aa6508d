"""Events (tamper, battery, leak, clock, restart), the event archive, diagnostics and the 45-day archive."""

from firmware.d100fc.archive import KEEP_DAYS
from firmware.d100fc.eventlog import SLOTS, EventLog
from protocol import messages as m
from tests.d100fc_scenario import decoded, make, run

MONDAY = 1780272000


def codes(up):
    return [e.code for e in decoded(up, m.Event)]


def test_tamper_events_are_urgent_and_flagged_in_the_next_hourly(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    hal.magnet = True
    run(hal, mod, 120)
    hal.magnet = False
    hal.cover = True
    run(hal, mod, 120)
    hal.cover = False
    run(hal, mod, 2 * 3600)
    assert codes(up)[1:] == [m.EV_MAGNET_START, m.EV_MAGNET_END, m.EV_COVER_OPEN, m.EV_COVER_CLOSED]
    urgent = [m.decode(p).code for p, u, _ in up.sent if u]
    assert urgent == [m.EV_MAGNET_START, m.EV_COVER_OPEN]
    hourly = decoded(up, m.Hourly)[0]
    assert hourly.flags & m.FLAG_MAGNET and hourly.flags & m.FLAG_COVER and hourly.flags & m.FLAG_RESTART
    assert not decoded(up, m.Hourly)[-1].flags & m.FLAG_MAGNET  # flags are for "since the last report"
    times = [t for t, code, ch, v in mod.events.latest(5)]
    assert times == sorted(times) and times[1] == MONDAY + 60


def test_battery_low_is_reported_once_until_it_recovers(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    hal.battery = 3200
    run(hal, mod, 3 * 3600)
    assert codes(up).count(m.EV_BATTERY_LOW) == 1
    assert decoded(up, m.Hourly)[0].battery == (3200 - 2000) // 20


def test_water_flowing_every_hour_for_a_day_is_a_leak(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    run(hal, mod, 23 * 3600 + 60, rates=(0, 600000, 0), step_ms=60000)
    assert m.EV_LEAK not in codes(up)
    run(hal, mod, 3600, rates=(0, 600000, 0), step_ms=60000)
    leak = [e for e in decoded(up, m.Event) if e.code == m.EV_LEAK]
    assert len(leak) == 1 and leak[0].channel == 1


def test_a_clock_set_is_an_event_and_small_trims_are_not(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    mod.on_downlink(m.TimeSync(1, hal.unix_time() + 3, 0).encode())
    assert m.EV_CLOCK_SET not in codes(up)
    ack = m.decode(mod.on_downlink(m.TimeSync(2, hal.unix_time() - 500, 0).encode()))
    assert (ack.seq, ack.status) == (2, m.ST_OK)
    ev = decoded(up, m.Event)[-1]
    assert (ev.code, ev.value) == (m.EV_CLOCK_SET, -500)


def test_the_event_archive_keeps_the_newest_and_survives_reboots(tmp_path):
    log = EventLog(str(tmp_path))
    for i in range(300):
        log.add(1000 + i, m.EV_COVER_OPEN, 0xFF, i)
    again = EventLog(str(tmp_path))
    assert again.seq == 300
    newest = again.latest(100)
    assert [v for _, _, _, v in newest] == list(range(200, 300))
    assert len(again.latest()) == SLOTS >= 100


def test_diag_reports_uptime_restarts_battery_and_radio_counters(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    up.stats = lambda: {"tx": 10, "rx": 20, "retries": 3, "parent": 0x1234, "rssi": -90, "hops": 4}
    run(hal, mod, 600)
    d = m.decode(mod.diag())
    assert (d.uptime_s, d.restarts, d.battery_mv) == (600, 1, 3600)
    assert (d.tx, d.rx, d.retries, d.parent, d.rssi, d.hops) == (10, 20, 3, 0x1234, -90, 4)


def test_the_archive_holds_45_days_served_by_range(tmp_path):
    hal, up, mod = make(str(tmp_path), MONDAY)
    days = KEEP_DAYS + 3
    run(hal, mod, days * 86400, rates=(0, 0, 3600000), step_ms=3600000)
    hours = mod.archive.hours()
    newest = mod.hour
    assert hours[-1] == newest and len(hours) >= 45 * 24
    assert hours[0] > MONDAY // 3600 + 24  # the oldest days were removed
    served = [m.decode(p) for p in mod.archive_range(newest - 45 * 24, 45 * 24 + 1)]
    assert len(served) == 45 * 24 + 1
    assert all(h.delta(2, 1) == 1 for h in served[2:])
    assert served[-1].totals == tuple(mod.registers.total(ch) for ch in range(3))

