# The mesh firmware's building blocks on real MicroPython: duty cycle, Trickle, routing, MAC timing.
from firmware.common.mesh.clock import Rand, ticks_add, ticks_diff
from firmware.common.mesh.control import RANK_INFINITE
from firmware.common.mesh.cycle import MAX_ERROR_MS, Cycle
from firmware.common.mesh.duty import LIMIT_MS, DutyCycle
from firmware.common.mesh.mac import CONTENTION_MS, CYCLE_MS, SLOT_MS, SUPERFRAME_MS, slot_wait, unicast_phase, unicast_wait
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


def test_the_cycle_learns_the_parents_clock_rate_and_keeps_its_phase_between_syncs():
    ppm = 40  # the parent's crystal runs this much faster than ours
    c = Cycle()

    def parents_offset(now):  # the network's offset from our ticks, as the parent's frames show it
        return (now * ppm // 1000000) % SUPERFRAME_MS
    for now in range(0, 9 * 1800000, 1800000):  # a sync every 30 minutes
        c.sync(7, parents_offset(now), now)
    later = 8 * 1800000 + 3600000  # an hour after the last sync: 144 ms of drift unlearnt
    assert abs(c.offset(later) - parents_offset(later)) <= 5  # the rate's unit, 2^-20 (0.95 ppm): 3.4 ms an hour
    c.sync(8, parents_offset(later), later)  # another parent, another crystal: its rate is learnt anew
    assert c.rate == 0 and c.offset(later) == parents_offset(later)
    c.sync(8, (parents_offset(later + 1800000) + 2 * MAX_ERROR_MS) % SUPERFRAME_MS, later + 1800000)
    assert c.rate == 0  # a jump (the parent restarted) is taken, not learnt from


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
            assert (phase + wait) % SUPERFRAME_MS == unicast_phase(addr) < CYCLE_MS
        down = slot_wait(3, phase)
        assert 0 <= down < SUPERFRAME_MS and (phase + down) % SUPERFRAME_MS == CYCLE_MS + 3 * SLOT_MS
    assert unicast_wait(CONCENTRATOR, 123) == 0


def test_consecutive_addresses_sample_far_apart():
    phases = sorted(unicast_phase(a) for a in range(1, 241))
    assert phases[-1] < CYCLE_MS - CONTENTION_MS
    gaps = [b - a for a, b in zip(phases, phases[1:])]
    assert max(gaps) < 5 * CYCLE_MS // 240  # spread over the whole cycle, no crowded corner
    assert len(set(unicast_phase(a) for a in range(1, 9))) == 8  # one house's modules never share a phase
