# The mesh firmware's building blocks on real MicroPython: duty cycle, Trickle, routing, MAC timing.
from firmware.common.mesh.clock import Rand, ticks_add, ticks_diff
from firmware.common.mesh.control import RANK_INFINITE
from firmware.common.mesh.cycle import DOUBT_AFTER, MAX_ERROR_MS, SYNC_ERROR_MS, UNKNOWN_RATE_PPM, Cycle
from firmware.common.mesh.duty import LIMIT_MS, DutyCycle
from firmware.common.mesh.flood import REMEMBER, REPAIR_MS, Flood
from firmware.common.mesh.mac import (CLOCK_ERROR_MS, CONTENTION_MS, CYCLE_MS, SAMPLE_LEAD_MS, SLOT_MS, SUPERFRAME_MS,
                                      WAKE_PREAMBLE_MS, guarded_preamble_ms, slot_wait, unicast_phase, unicast_wait)
from protocol.frame import CONCENTRATOR
from firmware.common.mesh.routing import HYSTERESIS, SIGNIFICANT, Routing
from firmware.common.mesh.trickle import Trickle


def test_duty_cycle_stops_at_ten_percent():
    d = DutyCycle(0)
    sent = 0
    t = 0
    while t < 3600000:
        if d.fits(t, 20):
            d.book(t, 20)
            sent += 20
        t += 50
    assert sent <= LIMIT_MS
    assert sent >= LIMIT_MS - 20


def test_a_broadcast_is_repaired_for_three_hours_only_even_when_ticks_wrap():
    flood = Flood()
    assert flood.repairable() is None
    heard = (1 << 30) - 1000  # ticks_ms wraps a second later
    old = flood.start(1, b"old", heard, heard, 0)
    new = flood.start(2, b"new", heard, heard, 0)
    assert flood.repairable() is new
    flood.expire(ticks_add(heard, REPAIR_MS - 1))
    assert flood.repairable() is new
    flood.expire(ticks_add(heard, REPAIR_MS))
    assert flood.repairable() is None and old.heard is None
    # once expired it stays so, though the ticks come round to look recent again
    flood.expire(ticks_add(heard, 1 << 30))
    assert flood.repairable() is None
    for counter in range(3, 3 + REMEMBER):
        flood.start(counter, b"x", 0, 0, 0)
    assert len(flood.recent) == REMEMBER and flood.repairable().counter == 2 + REMEMBER


def test_ticks_wrap():
    a = ticks_add((1 << 30) - 5, 10)
    assert a == 5
    assert ticks_diff(a, (1 << 30) - 5) == 10


def fire_times(tr, start, end, step=10):
    """Ticks in [start, end) at which the timer, polled every ``step`` ms, said to send."""
    return [t for t in range(start, end, step) if tr.poll(t)]


def test_trickle_fires_then_backs_off():
    tr = Trickle(Rand(7))
    tr.reset(0)
    fired = fire_times(tr, 0, 20000)
    assert 1000 <= fired[0] < 2000
    assert tr.interval > tr.imin
    assert len(fired) < 6


def test_trickle_capped_by_its_reset_keeps_a_short_interval_until_the_next_reset():
    tr = Trickle(Rand(7))
    tr.reset(0, 8 * tr.imin)  # a module without a route keeps asking
    fired = fire_times(tr, 0, 200000)
    assert tr.interval == 8 * tr.imin and len(fired) >= 200000 // (8 * tr.imin) - 1
    tr.reset(200000)
    fire_times(tr, 200000, 4 * tr.imax, 1000)
    assert tr.interval == tr.imax


def test_the_cycle_learns_the_networks_clock_rate_and_keeps_its_phase_between_syncs():
    ppm = 40  # the network's clock runs this much faster than ours
    c = Cycle()

    def parents_offset(now, jitter=0):  # the network's offset from our ticks, as the parent's frames show it
        return (now * ppm // 1000000 + jitter) % SUPERFRAME_MS
    assert c.error_ms(0) == SYNC_ERROR_MS
    for i, now in enumerate(range(0, 9 * 1800000, 1800000)):  # a sync every 30 minutes, each 1 ms off or not
        c.sync(parents_offset(now, i % 2), now)
    later = 8 * 1800000 + 3600000  # an hour after the last sync: 144 ms of drift unlearnt
    assert abs(c.offset(later) - parents_offset(later)) <= 5  # the rate's unit (0.95 ppm: 3.4 ms an hour) and 1 ms
    assert c.error_ms(later) >= abs(c.offset(later) - parents_offset(later))  # the guard covers what is left
    assert c.error_ms(later) < 20  # and is far below the unlearnt rate's 144 ms
    rate = c.rate
    c.sync(parents_offset(later), later)
    assert c.rate == rate and c.offset(later) == parents_offset(later)
    jump = later + 1800000
    c.sync((parents_offset(jump) + 2 * MAX_ERROR_MS) % SUPERFRAME_MS, jump)
    assert c.rate == rate  # a jump (the parent restarted) is taken, not learnt from
    assert c.offset(jump) == (parents_offset(jump) + 2 * MAX_ERROR_MS) % SUPERFRAME_MS


def test_an_unlearnt_rate_guards_for_two_crystals_drift():
    c = Cycle()
    c.sync(100, 0)
    c.sync(101, 60000)  # a minute later: too short a span to learn from
    assert c.rate == 0 and c.error_ms(60000 + 100000) == SYNC_ERROR_MS + 100 * UNKNOWN_RATE_PPM // 1000


def test_routing_prefers_the_cheaper_parent_and_refuses_its_child():
    r = Routing(5)
    r.version = 0
    for addr, rank, rssi, parent in ((1, 128, -60, 0), (2, 512, -60, 0), (3, 0, -103, 0xFFFF), (4, 100, -60, 5)):
        n = r.heard(addr, rssi, 0, rank)
        n.rank, n.version, n.parent, n.depth = rank, 0, parent, 1
    assert r.select(0)
    assert r.preferred.addr == 1
    assert r.rank < RANK_INFINITE
    assert not r.is_parent(4)  # names us as its parent


def test_routing_news_is_a_new_depth_or_a_significant_rank_change_not_a_parent_switch():
    r = Routing(5)
    r.version = 0

    def neighbour(addr, rank, depth):
        n = r.heard(addr, -60, 0, rank)
        n.rank, n.version, n.parent, n.depth = rank, 0, 0, depth
        return n
    a = neighbour(1, 128, 1)
    assert r.select(0)  # attached
    b = neighbour(2, 128, 1)
    a.rank = 128 + HYSTERESIS + 8
    assert not r.select(0) and r.preferred is b  # a new parent at the same depth and rank: the next beacon
    b.rank += SIGNIFICANT
    a.rank += SIGNIFICANT
    assert r.select(0)  # our rank rose by more than SIGNIFICANT
    neighbour(3, 0, 0)
    assert r.select(0) and r.depth == 1  # a hop nearer: our children's slot moves
    for addr in (1, 2, 3):
        r.forget(addr)
    assert r.select(0) and r.rank == RANK_INFINITE  # detached


def test_unicasts_aim_at_the_receivers_own_phase_broadcasts_at_its_depth_slot():
    for phase in (0, 99, 100, 999, 1500, 1999):
        for addr in (1, 2, 77, 240):
            wait = unicast_wait(addr, phase)
            assert 0 <= wait < SUPERFRAME_MS
            assert (phase + wait + SAMPLE_LEAD_MS) % SUPERFRAME_MS == unicast_phase(addr) < CYCLE_MS
        down = slot_wait(3, phase)
        assert 0 <= down < SUPERFRAME_MS
        assert (phase + down + SAMPLE_LEAD_MS) % SUPERFRAME_MS == CYCLE_MS + 3 * SLOT_MS
    assert unicast_wait(CONCENTRATOR, 123) == 0


def test_the_wake_preamble_covers_the_sample_from_anywhere_in_the_contention_window():
    """A frame started at any point of the window (unicast_wait, guarded by ``guard``) has its preamble on
    the air when the receiver's sample ends, for a receiver up to CLOCK_ERROR_MS + guard either way."""
    frame = bytearray(20)
    frame[3] = 1
    frame[7] = 9  # to router 9: a sleeping receiver
    sample = unicast_phase(9)
    settle = 1  # the sample's carrier check, cc1101.SETTLE_US rounded up
    for guard in (0, 1, 7, 32):
        preamble = guarded_preamble_ms(frame, guard)
        assert preamble == WAKE_PREAMBLE_MS + 2 * guard
        start = (unicast_wait(9, 0 + guard)) % SUPERFRAME_MS  # as Station._schedule aims, from phase 0
        for jitter in range(CONTENTION_MS):
            for error in range(-CLOCK_ERROR_MS - guard, CLOCK_ERROR_MS + guard + 1):
                ends = sample + error + settle  # where the receiver's check ends, in the sender's phase
                assert start + jitter <= ends <= start + jitter + preamble, (guard, jitter, error)
    assert guarded_preamble_ms(bytes([0, 0, 0, 2]) + bytes(16), 9) == 0  # an ACK: its receiver listens


def test_consecutive_addresses_sample_far_apart():
    phases = sorted(unicast_phase(a) for a in range(1, 241))
    assert phases[-1] < CYCLE_MS - CONTENTION_MS
    gaps = [b - a for a, b in zip(phases, phases[1:])]
    assert max(gaps) < 5 * CYCLE_MS // 240  # spread over the whole cycle, no crowded corner
    assert len(set(unicast_phase(a) for a in range(1, 9))) == 8  # one house's modules never share a phase


def test_a_sync_falls_due_within_minutes_while_the_rate_is_unknown_and_within_hours_once_learnt():
    c = Cycle()
    c.sync(100, 0)
    due = next(t for t in range(0, 7200000, 10000) if c.sync_due(t))
    assert 4 * 60000 < due <= 5 * 60000  # two crystals' 40 ppm drift 10 ms in under five minutes
    for now in range(600000, 4 * 600000, 600000):  # learnt: the network runs as fast as we do
        c.sync(100, now)
    last = 3 * 600000
    assert not c.sync_due(last + 1800000)  # half an hour later: still within the guard a sync keeps
    assert c.sync_due(last + 3 * 3600000)  # three hours later: the rate's bound has eaten the margin


def test_the_drift_since_the_last_sync_is_counted_down_to_a_limit():
    c = Cycle()
    assert c.drifts_in(38, 0) is None  # no sync yet: nothing to drift from
    c.sync(100, 0)
    d = c.drifts_in(38, 0)
    assert c.error_ms(d - 1000) <= SYNC_ERROR_MS + 38 < c.error_ms(d)  # the first second past 38 ms at 40 ppm
    assert 16 * 60000 < d < 17 * 60000 and c.drifts_in(38, d - 60000) == 60000 and c.drifts_in(38, d + 5) == 0


def test_a_parent_that_moved_widens_the_guard_until_it_settles():
    """Our parent moves when its own parent sets its clock: what we missed by bounds the drift at once."""
    c = Cycle()
    for now in range(0, 4 * 600000, 600000):  # learnt: the network runs as fast as we do
        c.sync(500, now)
    settled = c.error_ms(4 * 600000)
    c.sync(520, 4 * 600000)  # 20 ms off after ten minutes: the parent jumped
    after_jump = c.error_ms(5 * 600000)
    assert settled < 18 <= after_jump  # the next ten minutes are guarded for as much again
    for now in range(5 * 600000, 15 * 600000, 600000):
        c.sync(520, now)
    assert c.error_ms(15 * 600000) < settled  # and the guard narrows as the parent keeps still


def test_unanswered_attempts_make_a_module_doubt_its_clock_and_widen_its_guard():
    from firmware.common.mesh import rendezvous
    from firmware.common.mesh.rendezvous import MAX_GUARD_MS

    c = Cycle()
    c.sync(0, 0)
    base = rendezvous.guard(c, 7, 7, 1000)
    for _ in range(DOUBT_AFTER - 1):
        c.misses += 1
    assert not c.doubted() and not c.sync_due(1000)  # a collision or two: our clock is not in question yet
    c.misses += 1
    assert c.doubted() == 1 and c.sync_due(1000)  # the next upward frame fetches a sync from the parent we follow
    levels = [rendezvous.doubt(c, True, 1, 0, 5) for c.misses in range(DOUBT_AFTER, DOUBT_AFTER + 7)]
    assert levels == list(range(1, 8))
    guards = [rendezvous.guard(c, 7, 7, 1000, 0, level) for level in levels]
    assert guards[0] > base and guards == sorted(guards) and guards[4:] == [MAX_GUARD_MS] * 3
    assert rendezvous.doubt(c, False, 1, 3, 5) == 0  # a downward frame in its first round does not share our doubt
    assert rendezvous.doubt(c, False, 2, 0, 5) == 1 and rendezvous.doubt(c, False, 3, 2, 7) == 10  # its later rounds do
    c.sync(5, 2000)
    assert c.misses == 0 and not c.doubted()
