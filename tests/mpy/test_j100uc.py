# The J100UC collector on the real MicroPython unix port (pytest collects it on CPython too: the simulator hosts it there).
from firmware.j100uc.collector import Collector
from j100uc_bench import Downlink, MiniAgent, BenchHAL, flash_dir, run
from protocol import link, messages

H = 490000  # an hour number in 2025
U = messages.DELTA_UNKNOWN


def setup(modules=None, hold=256):
    hal = BenchHAL(flash_dir())
    hal.unix = H * 3600 + 60
    down = Downlink()
    conf = {"net_id": 0x1234, "site": "s1", "conc": "c-0001", "hold_records": hold,
            "modules": modules or {0x2A: ["electricity", "water", None]}}
    return hal, down, Collector(hal, conf, down), MiniAgent(hal)


def hourly(hour, totals, deltas=(U, U, U, U, U, U)):
    return messages.Hourly(hour, 0, 150, 0x31, totals, deltas).encode()


def readings(agent):
    return sorted((r[1], r[2], r[4], r[5]) for r in agent.records if r[0] == link.K_READING)


def test_hourly_reaches_the_agent_with_meter_hour_and_pulses():
    hal, down, c, agent = setup()
    c.on_uplink(0x2A, hourly(H, (100, 7, 0)))
    run(c, hal, agent, 5)
    assert readings(agent) == [(0x2A, 0, H * 3600, 100), (0x2A, 1, H * 3600, 7)]
    # water is resource index 3 in protocol.obis.RESOURCES, electricity 0
    codes = sorted(r[3] for r in agent.records)
    assert codes == [0x00, 0x30]


def test_two_lost_hours_are_rebuilt_from_deltas_and_older_ones_backfilled():
    hal, down, c, agent = setup()
    c.on_uplink(0x2A, hourly(H, (100, 10, 0)))
    # hours H+1..H+4 lost; H+5 carries deltas for H+4 and H+3
    c.on_uplink(0x2A, hourly(H + 5, (150, 20, 0), (5, 1, 0, 4, 2, 0)))
    run(c, hal, agent, 5)
    got = [(r[1], r[4], r[5]) for r in agent.records if r[2] == 0]
    assert (0x2A, (H + 4) * 3600, 145) in got and (0x2A, (H + 3) * 3600, 141) in got
    req = [messages.decode(p) for dst, p in down.sent if p[0] == messages.BackfillReq.TYPE]
    assert req and req[0].from_hour == H + 1 and req[0].count == 2
    c.on_uplink(0x2A, hourly(H + 2, (130, 15, 0)), backfill=True)
    c.on_uplink(0x2A, hourly(H + 2, (130, 15, 0)), backfill=True)  # a duplicate is not sent twice
    run(c, hal, agent, 2)
    got = [(r[4], r[5]) for r in agent.records if r[2] == 0]
    assert got.count(((H + 2) * 3600, 130)) == 1
    assert c.modules[0x2A].gaps.ranges == [[H + 1, 1]]
    assert c.duplicates == 1


def test_records_wait_while_the_agent_is_away_and_are_resent():
    hal, down, c, agent = setup()
    agent.acking = False
    run(c, hal, agent, 3)  # no ACK: HELLO only, nothing sent yet
    c.on_uplink(0x2A, hourly(H, (100, 7, 0)))
    agent.hal.to_agent[:] = b""
    assert c.ring.held() == 2
    agent.acking = True
    run(c, hal, agent, 5)
    assert len(readings(agent)) == 2 and c.ring.held() == 0


def test_corrupted_frames_are_counted_and_go_back_n_recovers():
    hal, down, c, agent = setup()
    run(c, hal, agent, 3)
    for h in range(10):
        c.on_uplink(0x2A, hourly(H + h, (100 + h, 7, 0)))
    c.tick()
    wire = bytearray(hal.to_agent)
    wire[len(wire) // 2] ^= 0x55  # noise on the line
    hal.to_agent[:] = wire
    agent.pump()
    assert agent.reader.bad_frames >= 1
    run(c, hal, agent, 10)
    assert [r[5] for r in agent.records if r[2] == 0] == [100 + h for h in range(10)]


def test_full_ring_marks_hours_for_backfill_instead_of_losing_them():
    hal, down, c, agent = setup(hold=4)
    agent.acking = False
    for h in range(4):
        c.on_uplink(0x2A, hourly(H + h, (100 + h, 7, 0)))
    assert c.ring.held() == 4
    assert c.modules[0x2A].gaps.missing() == 2  # H+2 and H+3 did not fit
    agent.acking = True
    hal.unix = (H + 4) * 3600
    run(c, hal, agent, 5)
    req = [messages.decode(p) for dst, p in down.sent if p[0] == messages.BackfillReq.TYPE]
    assert req and (req[0].from_hour, req[0].count) == (H + 2, 2)


def test_unknown_modules_and_bad_messages_are_counted_not_forwarded():
    hal, down, c, agent = setup()
    c.on_uplink(0x99, hourly(H, (1, 2, 3)))
    c.on_uplink(0x2A, b"\x01\x02")
    run(c, hal, agent, 2)
    assert agent.records == [] and c.unknown == 1 and c.bad_messages == 1


def test_registers_and_events_become_records():
    hal, down, c, agent = setup()
    c.on_uplink(0x2A, messages.Registers(H, 0, (1, 2, 3, 4, 5)).encode())
    c.on_uplink(0x2A, messages.Event(H * 3600 + 5, messages.EV_MAGNET_START, 0xFF, 1).encode())
    run(c, hal, agent, 3)
    regs = sorted(r[3] & 0x0F for r in agent.records if r[0] == link.K_READING)
    assert regs == [1, 2, 3, 4, 9]
    ev = [r for r in agent.records if r[0] == link.K_EVENT]
    assert ev == [(link.K_EVENT, 0x2A, 0xFF, messages.EV_MAGNET_START, H * 3600 + 5, 1)]


def test_commands_go_down_with_a_seq_and_results_come_back():
    hal, down, c, agent = setup()
    run(c, hal, agent, 2)
    agent.send(link.pack(link.L_CMD, 77, 0x2A, tail=messages.Relay(0, messages.RELAY_OPEN, 3).encode()))
    agent.send(link.pack(link.L_CMD, 78, 0xFFFF, tail=messages.GroupCmd(0, 5, 1, 600).encode()))
    run(c, hal, agent, 2)
    dst, payload = [s for s in down.sent if s[1][0] == messages.Relay.TYPE][0]
    relay = messages.decode(payload)
    assert dst == 0x2A and relay.action == messages.RELAY_OPEN and relay.seq != 0
    assert down.broadcasts[-1][1] == 5
    c.on_uplink(0x2A, messages.Ack(relay.seq, messages.ST_OK, 0).encode())
    run(c, hal, agent, 2)
    results = sorted(f[1] for f in agent.frames if f[0] == link.L_RESULT)
    assert results == [(77, 0x2A, 0, 0), (78, 0xFFFF, 0, 0)]


def test_time_from_the_agent_sets_the_clock_and_only_the_agent_tells_the_modules():
    hal, down, c, agent = setup()
    run(c, hal, agent, 2)
    agent.send(link.pack(link.L_TIME, 1767225600))
    run(c, hal, agent, 3700)
    assert hal.unix == 1767225600  # this bench's clock stands still between syncs
    assert not down.broadcasts  # an untagged TIME_SYNC from here would be refused by commissioned modules


def test_restart_keeps_the_boot_counter_and_the_last_hour_the_agent_has():
    hal, down, c, agent = setup()
    c.on_uplink(0x2A, hourly(H, (100, 7, 0)))
    run(c, hal, agent, 3)
    agent.acking = False
    c.on_uplink(0x2A, hourly(H + 1, (101, 7, 0)))  # still in the ring when the power goes
    c._save_hours()
    c2 = Collector(hal, c.config, down)
    assert c2.boot == c.boot + 1
    assert c2.modules[0x2A].last_hour == H
    c2.on_uplink(0x2A, hourly(H + 4, (140, 7, 0)))
    assert c2.modules[0x2A].gaps.ranges == [[H + 1, 3]]  # H+1 is asked back from the archive


def test_the_agent_adds_and_removes_modules_and_the_table_survives_a_restart():
    from firmware.j100uc.roster import Roster
    hal = BenchHAL(flash_dir())
    hal.unix = H * 3600 + 60
    conf = {"net_id": 0x1234, "modules": {}}
    c = Collector(hal, conf, Downlink(), Roster(hal.flash_path(), conf["modules"]))
    agent = MiniAgent(hal)
    key = bytes(range(1, 17))
    agent.send(link.pack(link.L_ROSTER, 0x2B, 0, 3, link.NO_RESOURCE, tail=key))
    run(c, hal, agent, 3)
    assert (link.L_ROSTER_OK, (0x2B, link.key_check(key)), b"") in agent.frames
    assert c.roster.get(0x2B) == key and c.modules[0x2B].resources == [0, 3, -1]
    c.on_uplink(0x2B, hourly(H, (100, 7, 0)))
    run(c, hal, agent, 3)
    assert readings(agent) == [(0x2B, 0, H * 3600, 100), (0x2B, 1, H * 3600, 7)]
    again = Roster(hal.flash_path())  # a restart reads the table and the key back from flash
    assert again.get(0x2B) == key and again.resources == {0x2B: [0, 3, -1]}
    agent.send(link.pack(link.L_ROSTER, 0x2B, 0, 0, 0, tail=bytes(16)))
    run(c, hal, agent, 3)
    assert (link.L_ROSTER_OK, (0x2B, 0), b"") in agent.frames
    assert 0x2B not in c.modules and c.roster.get(0x2B) is None and Roster(hal.flash_path()).resources == {}
    agent.send(link.pack(link.L_ROSTER, 0x2C, 9, 0, 0, tail=key))  # no resource 9
    run(c, hal, agent, 3)
    assert (link.L_ROSTER_OK, (0x2C, 0), b"") in agent.frames and 0x2C not in c.modules and c.bad_messages == 1
