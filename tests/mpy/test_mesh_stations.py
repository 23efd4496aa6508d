# The mesh stations themselves (MeshRoot, MeshNode) on real MicroPython, over tests/mpy/mesh_air.py:
# join, relaying up and down, duplicates, replays, loops, repair, broadcast and the duty-cycle limit.
import struct

from firmware.common.mesh.control import ANSWER_FMT, JOIN_FMT
from firmware.common.mesh.cycle import Cycle
from firmware.common.mesh.duty import LIMIT_MS
from firmware.common.mesh.mac import MAX_ATTEMPTS, SLOT_MS, SUPERFRAME_MS, airtime_ms, unicast_phase
from firmware.common.mesh.node import SYNC_ASK_DRIFT_MS
from firmware.common.mesh.station import ANSWER_ATTEMPTS, FRESH, MAX_FOLLOWERS, PAUSE_MS, Job
from mesh_air import NET_ID, Air, module_key
from protocol.frame import (BROADCAST, CONCENTRATOR, F_ACK_REQ, L_MORE, L_PREFERRED, T_ACK, T_BCAST, T_BEACON, T_DATA,
                            T_JOIN, Frame, seal_frame, set_link_flags)

CHAIN = ((0, 1), (1, 2), (2, 3))
DIAMOND = ((0, 1), (0, 2), (1, 3), (2, 3), (3, 4))
JOINED_MS = 600000  # Trickle, a spread join request each and the answers: minutes


def joined(links):
    air = Air(links)
    air.run(JOINED_MS)
    assert all(s.joined for a, s in air.stations.items() if a)
    return air


def sealed_up(addr, payload, counter):
    frame = Frame(NET_ID, T_DATA | F_ACK_REQ, addr, CONCENTRATOR, counter, payload, 0, addr, CONCENTRATOR)
    return bytes(seal_frame(frame, module_key(addr)))


def test_a_cold_chain_joins_three_deep_and_reports_arrive_once():
    air = joined(CHAIN)
    assert [air.stations[a].routing.depth for a in (1, 2, 3)] == [1, 2, 3]
    for a in (1, 2, 3):
        assert air.stations[a].uplink.send(b"\x99" + bytes([a]), urgent=True)
    air.run(60000)
    assert sorted(air.up) == [(a, b"\x99" + bytes([a])) for a in (1, 2, 3)]
    assert air.stations[2].relayed >= 1  # the far module's report went through its parents


def test_a_command_goes_down_three_hops_along_the_learnt_route():
    air = joined(CHAIN)
    assert air.root.downlink.send(3, b"\x42cmd")
    air.run(60000)
    assert air.heard.get(3) == [b"\x42cmd"] and 1 not in air.heard and 2 not in air.heard


def test_a_duplicate_is_acknowledged_again_but_delivered_once():
    air = joined(CHAIN)
    frame = sealed_up(1, b"dup", 10 ** 6)
    sent = air.root.sent
    for _ in range(2):
        air.root.hal.rx.append(frame)
        air.root.poll()
    assert [p for s, p in air.up].count(b"dup") == 1
    assert air.root.sent - sent == 2  # an acknowledgement each time


def test_a_replayed_or_forged_frame_is_refused():
    air = joined(CHAIN)
    old = sealed_up(1, b"old", 5 * 10 ** 6)
    air.root.hal.rx.append(old)
    for i in range(40):  # push the old counter out of the replay window and the recent list
        air.root.hal.rx.append(sealed_up(1, b"n%d" % i, 5 * 10 ** 6 + 1 + i))
    forged = bytearray(sealed_up(1, b"forged", 6 * 10 ** 6))
    forged[-1] ^= 1
    air.root.hal.rx.append(old)
    air.root.hal.rx.append(bytes(forged))
    air.root.poll()
    payloads = [p for s, p in air.up]
    assert payloads.count(b"old") == 1 and b"forged" not in payloads and payloads.count(b"n39") == 1


def test_an_upward_frame_from_a_parent_reveals_a_loop_and_is_not_taken():
    air = joined(CHAIN)
    node = air.stations[2]
    parent = node.routing.preferred.addr
    frame = bytearray(sealed_up(3, b"x", 7 * 10 ** 6))
    struct.pack_into("<HH", frame, 5, parent, 2)
    relayed = node.relayed
    node.hal.rx.append(bytes(frame))
    node.poll()
    assert node.routing.table[parent].rank == 0xFFFF and not node.routing.is_parent(parent)
    assert node.relayed == relayed


def test_a_dead_parent_is_routed_around():
    air = joined(DIAMOND)
    node = air.stations[3]
    assert len(node.routing.parents) == 2  # 1 and 2, both one hop from the concentrator
    air.dead.append(node.routing.preferred.addr)
    for i in range(12):
        assert node.uplink.send(b"r%d" % i, urgent=True)
        air.run(20000)
    assert [p for s, p in air.up if s == 3] == [b"r%d" % i for i in range(12)]
    assert node.routing.preferred.addr not in air.dead


def test_a_broadcast_reaches_every_module_once():
    air = joined(DIAMOND)
    air.root.downlink.broadcast(b"\x14ripple")
    air.run(60000)
    assert air.broadcasts == {a: [b"\x14ripple"] for a in (1, 2, 3, 4)} and not air.heard


def test_a_module_that_misses_the_flood_gets_the_broadcast_from_its_preferred_parent_with_retries():
    air = joined(DIAMOND)
    parent = air.stations[3]
    assert 4 in parent.followers  # its join request named 3 its preferred parent (L_PREFERRED)
    lost = []

    def lose(sender, receiver, frame):  # the flood and the first copies do not reach module 4
        if receiver == 4 and frame[3] & 0x0F == T_BCAST and len(lost) < 3:
            lost.append(frame)
            return True
        return False
    air.lose = lose
    acked = parent.acked
    air.root.downlink.broadcast(b"\x14ripple")
    air.run(60000)
    assert len(lost) == 3 and air.broadcasts.get(4) == [b"\x14ripple"]
    assert parent.acked > acked and not parent.queue and parent.job is None  # module 4 acknowledged its copy


def test_a_parent_used_only_as_a_spare_sends_no_copies():
    air = joined(DIAMOND)
    node = air.stations[3]
    spare = 1 if node.routing.preferred.addr == 2 else 2
    frame = bytearray(sealed_up(3, b"spare", 9 * 10 ** 6))
    struct.pack_into("<HH", frame, 5, 3, spare)  # relayed once through the spare (no L_PREFERRED)
    air.stations[spare].hal.rx.append(bytes(frame))
    air.stations[spare].poll()
    assert 3 in air.stations[spare].routes and not air.stations[spare].followers
    copies = []

    def note(sender, receiver, frame):  # nothing is lost: only who sends a copy to one child is noted
        link_dst = frame[7] | frame[8] << 8
        if frame[3] & 0x0F == T_BCAST and link_dst != 0xFFFF:
            copies.append((sender, link_dst))
        return False
    air.lose = note
    air.root.downlink.broadcast(b"\x14ripple")
    air.run(60000)
    assert (node.routing.preferred.addr, 3) in copies and (spare, 3) not in copies and (3, 4) in copies
    assert air.broadcasts == {a: [b"\x14ripple"] for a in (1, 2, 3, 4)}


def test_the_duty_cycle_stops_a_station_that_keeps_sending():
    air = joined(CHAIN)
    node = air.stations[1]
    frame = sealed_up(1, b"x" * 30, 8 * 10 ** 6)
    # Only the budget is counted: the neighbours need not hold ~14,000 copies (they filled the MicroPython
    # heap once this module's other tests had run before it).
    air.lose = lambda sender, receiver, f: True
    on_air = 0
    for _ in range(LIMIT_MS // airtime_ms(frame) + 50):  # more than an hour's 10 % in one go
        if node._transmit(frame, air.now):
            on_air += airtime_ms(frame)
    assert node.duty_refused >= 50 and on_air <= LIMIT_MS


def sealed_down(dst, kind, payload, counter, hop_from, hop_to):
    frame = Frame(NET_ID, kind | F_ACK_REQ, CONCENTRATOR, dst, counter, payload, 1, hop_from, hop_to)
    return bytes(seal_frame(frame, module_key(dst)))


def sends_to(air, kind):
    """Note every frame of ``kind`` on the air as (time, sender, link destination); nothing is lost."""
    sent = []

    def note(sender, receiver, frame):  # called once for each neighbour that hears it
        entry = (air.now, sender, frame[7] | frame[8] << 8)
        if frame[3] & 0x0F == kind and (not sent or sent[-1] != entry):
            sent.append(entry)
        return False
    air.lose = note
    return sent


def test_an_unanswered_command_waits_out_its_backoff_in_the_queue_while_another_child_is_served():
    air = joined(DIAMOND)
    root = air.root
    sent = sends_to(air, T_DATA)
    air.dead.append(1)
    assert root.downlink.send(1, b"\x42one")
    air.run(2500)  # its first attempt went unanswered
    assert [s for s in sent if s[2] == 1]
    assert root.downlink.send(2, b"\x42two")
    air.run(60000)
    to_one = [t for t, s, d in sent if s == 0 and d == 1]
    to_two = [t for t, s, d in sent if s == 0 and d == 2]
    assert len(to_one) == MAX_ATTEMPTS and air.heard.get(2) == [b"\x42two"]
    assert to_two[0] < to_one[-1]  # before: the retries to 1 held every other frame of the concentrator


def test_a_join_answer_gets_more_attempts_than_a_command():
    air = joined(DIAMOND)
    root = air.root
    sent = sends_to(air, T_JOIN)
    air.dead.append(1)
    root.hal.rx.append(sealed_up_join(1, 9 * 10 ** 6))
    air.run(120000)
    times = [t for t, s, d in sent if s == 0 and d == 1]
    # the first round: the attempts before the pause that waits out a fade (PAUSE_MS, a later round)
    first_round = 1 + next((i for i in range(len(times) - 1) if times[i + 1] - times[i] >= PAUSE_MS), len(times) - 1)
    assert first_round == ANSWER_ATTEMPTS > MAX_ATTEMPTS


def sealed_up_join(addr, counter):
    payload = struct.pack(JOIN_FMT, 0, 128, 1)
    frame = Frame(NET_ID, T_JOIN | F_ACK_REQ, addr, CONCENTRATOR, counter, payload, 0, addr, CONCENTRATOR)
    return bytes(seal_frame(frame, module_key(addr)))


def test_a_relay_forwards_a_join_answer_before_the_reports_queued_ahead_of_it():
    air = joined(CHAIN)
    relay = air.stations[1]
    air.dead.append(0)  # the concentrator does not answer: the relay's reports stay queued
    for i in range(3):
        assert relay.uplink.send(b"q%d" % i, urgent=True)
    relay.poll()
    assert relay.job is not None and relay.job.up and len(relay.queue) == 2
    relay.hal.rx.append(sealed_down(2, T_JOIN, struct.pack(ANSWER_FMT, 0, relay.routing.version), 11 * 10 ** 6, 0, 1))
    relay.poll()
    assert len(relay.queue) == 3 and not relay.queue[0].up and relay.queue[0].dst == 2  # the answer goes next


def test_the_concentrator_sends_to_a_child_still_awake_from_the_last_exchange_first():
    air = joined(DIAMOND)
    root = air.root
    now = air.now
    # child 1 sampled 5 ms ago and acknowledged a moment ago a frame that said another follows
    root.cycle.base = (unicast_phase(1) + 5 - now) % SUPERFRAME_MS
    root._burst_hop, root._burst_until, root._burst_more = 1, now + 2, True  # it was told more follows
    root.queue = [Job(bytearray(sealed_down(d, T_DATA, b"x", 12 * 10 ** 6 + d, 0, d)), False) for d in (2, 1)]
    assert root._next_job(now) == 1
    root._burst_more = False  # not told (L_MORE): it went back to sampling after its acknowledgement
    assert root._next_job(now) == 0
    root._burst_more = True
    root._burst_until = now  # asleep again: the child that samples soonest goes first
    assert root._next_job(now) == 0


def _data_to(sender, hop):
    """A lose() predicate: upward data frames from ``sender`` to ``hop``."""
    def match(s, receiver, frame):
        return s == sender and receiver == hop and frame[3] & 0x0F == T_DATA and (frame[7] | frame[8] << 8) == hop
    return match


def test_a_frame_whose_rounds_failed_waits_out_the_fade_and_its_sole_parent_is_not_written_off():
    from firmware.common.mesh.mac import MAX_ATTEMPTS
    from firmware.common.mesh.routing import DEAD_AFTER
    from firmware.common.mesh.station import PAUSE_MS

    air = joined(CHAIN)
    node = air.stations[1]  # its only parent is the concentrator
    to_root = _data_to(1, 0)
    tries, state = [], []
    lost = 2 * MAX_ATTEMPTS  # a fade: two rounds' attempts all go unanswered

    def lose(sender, receiver, frame):
        if to_root(sender, receiver, frame):
            tries.append(air.now)
            if len(tries) == lost + 1:
                state.append((node.routing.preferred.addr, node.routing.table[0].failures))
            return len(tries) <= lost
        return False
    air.lose = lose
    assert node.uplink.send(b"faded", urgent=True)
    air.run(400000)
    assert (1, b"faded") in air.up
    assert len(tries) == lost + 1
    assert tries[MAX_ATTEMPTS] - tries[MAX_ATTEMPTS - 1] >= PAUSE_MS and tries[lost] - tries[lost - 1] >= PAUSE_MS
    # only the second round counted towards the write-off: the module stayed attached throughout
    assert state == [(0, MAX_ATTEMPTS)] and MAX_ATTEMPTS < DEAD_AFTER < lost


def test_the_last_round_goes_through_a_detour_when_the_parent_stays_silent():
    air = joined(((0, 1), (0, 2), (1, 2)))
    node = air.stations[1]
    r = node.routing
    r.table[0].set_quality(100)  # a weak link to the concentrator: a peer now ranks below us
    r.select(air.now)
    assert r.preferred.addr == 0 and not r.is_parent(2) and r.detour(0) == 2
    air.lose = _data_to(1, 0)  # the concentrator never hears module 1 again
    relayed = air.stations[2].relayed
    assert node.uplink.send(b"detour", urgent=True)
    air.run(600000)
    assert (1, b"detour") in air.up and air.stations[2].relayed > relayed


def test_an_acknowledgement_from_the_preferred_parent_brings_its_new_depth():
    air = joined(CHAIN)
    node = air.stations[3]
    r = node.routing
    air.stations[2].trickle.stop()  # no beacon from the parent: only its ACK can tell
    r.table[2].depth = 7  # what we last heard of it, before it came nearer
    r.select(air.now)
    assert r.depth == 8
    assert node.uplink.send(b"x", urgent=True)
    air.run(5000)
    assert (3, b"x") in air.up and r.depth == 3


def test_after_its_depth_changed_a_router_beacons_in_its_former_childrens_slot():
    from firmware.common.mesh.station import FORMER_BEACONS

    air = joined(CHAIN)
    node = air.stations[3]
    node._beacon_slot()
    node._beacon_slot()
    assert node._children_slot == 4
    node.routing.depth = 1  # came two hops nearer
    slots = [node._beacon_slot() for _ in range(2 * FORMER_BEACONS + 4)]
    assert slots.count(4) == FORMER_BEACONS and slots[-4:] in ([2, 3, 2, 3], [3, 2, 3, 2])


def test_a_child_that_had_the_broadcast_says_so_and_its_next_copy_goes_after_those_the_flood_missed():
    from firmware.common.mesh.station import FRESH, HAD
    from protocol.frame import L_HAD, T_ACK

    air = joined(DIAMOND)
    parent = air.stations[3]
    assert 4 in parent.followers
    acks, copies, got = [], [], []

    def note(sender, receiver, frame):
        link_dst = frame[7] | frame[8] << 8
        if sender == 4 and frame[3] & 0x0F == T_ACK and link_dst == 3:
            acks.append(frame[4])
        if sender == 3 and frame[3] & 0x0F == T_BCAST:
            (copies if link_dst == 4 else got).append(air.now)
        return False
    air.lose = note
    air.root.downlink.broadcast(b"\x14one")
    air.run(60000)
    had = parent.followers[4]
    assert any(flags & L_HAD for flags in acks) == had  # the flood beat the copy, or it did not
    # The concentrator's first ring: the copy to the child the flood missed last time goes first, the one
    # to the child it reached goes behind whatever is queued, neither waits (6 s for the latter until
    # session 10).
    root = air.root
    root.followers.update({1: HAD, 2: FRESH})
    root.downlink.broadcast(b"\x14two")
    children = [job.child for job in root.queue if job.child is not None]
    assert children == [2, 1] and root.queue[0].child == 2 and root.queue[-1].child == 1
    assert not [job for job in root.paused if job.child is not None]
    air.run(60000)
    assert air.broadcasts[4] == air.broadcasts[1] == [b"\x14one", b"\x14two"]


def test_a_relay_with_a_full_queue_still_queues_its_followers_broadcast_copies():
    air = joined(DIAMOND)
    parent = air.stations[3]
    assert 4 in parent.followers
    n = 0
    while parent.enqueue(sealed_up(4, b"r%d" % n, 100 + n), True):
        n += 1
    assert n and len(parent.queue) == parent.queue_max  # reports wait: the relay takes no more
    frame = bytearray(parent._seal(T_BCAST, BROADCAST, b"\x14x", parent.net_key))
    parent._start_broadcast(7, frame, parent.hal.ticks_ms())
    assert [job.child for job in parent.queue if job.child is not None] == [4]


def test_a_former_preferred_parent_hears_it_is_no_more_and_sends_only_a_late_backup_copy():
    from firmware.common.mesh.station import BACKUP_DELAY_MS, ELSEWHERE, FRESH
    from protocol.frame import L_ELSEWHERE, T_ACK
    from protocol.tesla import DISCLOSE_AFTER, INTERVAL_S

    air = joined(DIAMOND)
    node = air.stations[3]
    other = 1 if node.routing.preferred.addr == 2 else 2
    former = air.stations[other]
    former.followers[3] = FRESH  # 3 named it its preferred parent once, and since then only the other
    acks, copies = [], []

    def note(sender, receiver, frame):
        link_dst = frame[7] | frame[8] << 8
        if sender == 3 and frame[3] & 0x0F == T_ACK and link_dst == other:
            acks.append(frame[4])
        if sender == other and frame[3] & 0x0F == T_BCAST and link_dst == 3:
            copies.append(air.now)
        return False
    air.lose = note
    air.root.downlink.broadcast(b"\x14one")
    air.run(60000)
    assert acks and all(flags & L_ELSEWHERE for flags in acks) and former.followers[3] == ELSEWHERE
    del copies[:]
    start = air.now
    air.root.downlink.broadcast(b"\x14two")
    air.run(BACKUP_DELAY_MS + 60000)
    assert air.broadcasts[3] == [b"\x14one", b"\x14two"]
    assert copies and copies[0] - start >= BACKUP_DELAY_MS  # a backup, after the rush
    assert copies[0] - start < (DISCLOSE_AFTER - 1) * INTERVAL_S * 1000  # and before a tagged command's key
    r = node.routing
    r.preferred, r.parents, r._next = r.table[other], [r.table[other]], 0
    copies_before = len(copies)
    assert node.uplink.send(b"back", urgent=True)
    air.run(20000)
    # Named its preferred parent again: the newest broadcast goes to it at once (Station._repair_copy); its
    # ACK says it had it, which tells nothing of our flood: the next broadcast's copy goes at once too.
    assert len(copies) > copies_before and former.followers[3] == FRESH


def test_a_follower_whose_copies_all_failed_gets_the_broadcast_when_it_next_names_its_parent():
    from firmware.common.mesh.flood import REPAIR_MS

    air = joined(CHAIN)
    parent = air.stations[2]
    assert 3 in parent.followers

    def fade(sender, receiver, frame):  # every flooded copy and every acknowledged copy from 2 to 3 is lost
        return sender == 2 and receiver == 3 and frame[3] & 0x0F == T_BCAST
    air.lose = fade
    air.root.downlink.broadcast(b"\x14ripple")
    air.run(15 * 60000)  # past the copy's three rounds (PAUSE_MS between them)
    assert 3 not in air.broadcasts and 3 not in parent.followers  # given up: "its next upward frame says"
    assert air.broadcasts.get(2) == [b"\x14ripple"]
    air.lose = None
    air.run(60000)
    assert 3 not in air.broadcasts  # nothing more comes by itself
    assert air.stations[3].uplink.send(b"hourly", urgent=True)
    air.run(30000)
    assert air.broadcasts.get(3) == [b"\x14ripple"] and parent.followers[3] == FRESH
    assert air.now < REPAIR_MS


def test_a_parent_of_dense_children_spreads_its_first_flooded_copy_others_send_it_in_the_next_slot():
    from firmware.common.mesh.mac import DENSE_FORWARDERS
    from protocol.frame import BROADCAST, L_DENSE

    first = range(1, DENSE_FORWARDERS + 1)
    crowded, sparse = DENSE_FORWARDERS + 1, DENSE_FORWARDERS + 2
    links = [(0, a) for a in first] + [(a, crowded) for a in first] + [(1, sparse), (crowded, crowded + 10)]
    air = joined(links)
    dense_parent = air.stations[air.stations[crowded].routing.preferred.addr]
    flags = {}

    def note(sender, receiver, frame):
        if frame[3] & 0x0F == T_DATA and receiver != 0 or frame[3] & 0x0F == T_JOIN:
            flags.setdefault(sender, set()).add(frame[4] & L_DENSE)
        return False
    air.lose = note
    assert air.stations[crowded].uplink.send(b"up", urgent=True) and air.stations[sparse].uplink.send(b"up", urgent=True)
    air.run(20000)
    assert flags[crowded] == {L_DENSE} and flags[sparse] == {0}  # each says whether it hears many forwarders
    assert dense_parent._children_dense() and not air.stations[1 if dense_parent.addr != 1 else 2]._children_dense()
    waits = {}  # forwarder -> first flooded copy's wait after it had the broadcast, per broadcast
    heard = {}

    def flood(sender, receiver, frame):
        if frame[3] & 0x0F == T_BCAST and frame[7] | frame[8] << 8 == BROADCAST and sender in heard:
            waits.setdefault(sender, {}).setdefault(frame[9:15], air.now - heard[sender])
        return False
    air.lose = flood
    for n in range(6):
        heard.clear()
        for a in first:
            heard[a] = air.now  # the concentrator's flood is in their slot of the next superframe at the latest
        air.root.downlink.broadcast(b"\x14" + bytes([n]))
        air.run(30000)
    spread = list(waits.pop(dense_parent.addr).values())
    others = [w for a in waits for w in waits[a].values()]
    assert len(spread) == 6 and len(others) >= 12
    assert max(others) - min(others) < SLOT_MS  # the next slot, every time
    assert max(spread) > min(others) + SUPERFRAME_MS  # a later one of the children's slots


def test_a_router_that_hears_many_routers_a_level_up_samples_a_second_broadcast_slot():
    from firmware.common.mesh.mac import DENSE_FORWARDERS, SECOND_SLOT, broadcast_depths

    first = range(1, DENSE_FORWARDERS + 1)
    crowded, sparse = DENSE_FORWARDERS + 1, DENSE_FORWARDERS + 2
    links = [(0, a) for a in first] + [(a, crowded) for a in first] + [(1, sparse), (2, sparse)]
    air = joined(links)
    for a, dense in ((crowded, True), (sparse, False), (1, False)):
        node = air.stations[a]
        assert node.dense() == dense
        depth = node.routing.depth
        assert broadcast_depths(depth, dense) == ((depth, depth + SECOND_SLOT) if dense else (depth,))
    assert air.stations[crowded].routing.depth == 2
    air.root.downlink.broadcast(b"\x14all")
    air.run(60000)
    assert all(air.broadcasts.get(a) == [b"\x14all"] for a in air.stations if a)


def diamond_parents(air):
    """Module 3 of the DIAMOND, its preferred parent and its other one."""
    node = air.stations[3]
    pref = node.routing.preferred
    return node, pref, node.routing.table[1 if pref.addr == 2 else 2]


def test_a_new_preferred_parent_hears_of_it_on_the_next_upward_frame():
    air = joined(DIAMOND)
    node, old, new = diamond_parents(air)
    r = node.routing
    r.preferred, r.parents, r._next = new, [new, old], 0  # round robin would pick the old one next
    first = []

    def note(sender, receiver, frame):
        if sender == 3 and frame[3] & 0x0F == T_DATA and not first:
            first.append(frame[7] | frame[8] << 8)
        return False
    air.lose = note
    assert node.uplink.send(b"tell", urgent=True)
    air.run(20000)
    assert first == [new.addr] and 3 in air.stations[new.addr].followers


def test_a_module_whose_clock_needs_a_sync_sends_its_next_frame_to_the_parent_it_follows():
    air = joined(DIAMOND)
    node, pref, other = diamond_parents(air)
    r = node.routing
    r.parents, node._told = [pref, other], pref
    now = air.now
    offset = node.cycle.offset(now)
    node.cycle = Cycle()
    node.cycle.sync(offset, now)  # just set: the clock needs nothing
    r._next = 0  # round robin would pick the other one next
    assert node._first_hop(Job(bytearray(sealed_up(3, b"calm", 1)), True), now) == other.addr
    node.cycle = Cycle()
    node.cycle.sync(offset, now - 600000)  # ten minutes ago, our rate unknown: it may have drifted 24 ms
    r._next = 0
    assert node.cycle.sync_due(now)
    assert node._first_hop(Job(bytearray(sealed_up(3, b"due", 2)), True), now) == pref.addr


def test_a_module_with_nothing_to_send_asks_its_preferred_parent_for_a_sync_when_it_may_have_drifted():
    air = joined(CHAIN)
    node = air.stations[3]
    pref = node.routing.preferred.addr
    asks, acks = [], []

    def note(sender, receiver, frame):
        kind = frame[3] & 0x0F
        if sender == 3 and kind == T_BEACON and frame[7] | frame[8] << 8 == pref:
            asks.append(air.now)
        if sender == pref and receiver == 3 and kind == T_ACK:
            acks.append(air.now)
        return sender == pref and receiver == 3 and kind == T_BEACON  # the parent's beacons never reach us
    air.lose = note
    c = node.cycle
    start = air.now
    due = c.drifts_in(SYNC_ASK_DRIFT_MS, start)
    assert due > 0
    air.run(start + due + 60000)
    assert len(asks) == 1 and asks[0] - start >= due  # not before our clock may have drifted that far
    assert acks == asks and c._at == asks[0]  # the parent acknowledged at once, and its ACK set our clock


def test_the_concentrator_keeps_every_child_that_follows_it():
    air = joined(DIAMOND)
    root = air.root
    children = range(100, 100 + MAX_FOLLOWERS + 6)  # more first-ring children than a module keeps
    for a in children:
        root.module_keys[a] = module_key(a)
        frame = bytearray(sealed_up(a, b"hello", 1))
        set_link_flags(frame, L_PREFERRED)
        root.hal.rx.append(bytes(frame))
    root.poll()
    assert all(root.followers.get(a) == FRESH for a in children)  # each is owed a broadcast's copy


def test_a_neighbour_without_a_route_gets_one_beacon_per_gap_and_no_trickle_restart():
    from firmware.common.mesh.control import RANK_INFINITE
    from firmware.common.mesh.station import ANSWER_GAP_MS
    from protocol.frame import T_BEACON

    air = joined(DIAMOND)
    parent, child = air.stations[3], air.stations[4]
    parent.trickle.stop()  # a restart would show as a running timer
    answers = []

    def note(sender, receiver, frame):
        if sender == 3 and receiver == 4 and frame[3] & 0x0F == T_BEACON:
            answers.append(air.now)
        return False
    air.lose = note

    def ask():  # the child lost its route and says so: rank infinite (RPL's DIS)
        r = child.routing
        r.preferred, r.parents, r.rank = None, [], RANK_INFINITE
        child._send_beacon(air.now)
        air.run(2 * SUPERFRAME_MS)

    ask()
    assert len(answers) == 1
    ask()
    assert len(answers) == 1  # asked again within ANSWER_GAP_MS
    air.run(ANSWER_GAP_MS)
    ask()
    assert len(answers) == 2 and not parent.trickle.running()


def test_a_frame_with_another_queued_for_the_same_hop_says_so_and_the_last_does_not():
    air = joined(DIAMOND)
    root = air.root
    sent = []

    def note(sender, receiver, frame):
        if sender == 0 and frame[3] & 0x0F == T_DATA and receiver == (frame[7] | frame[8] << 8):
            sent.append((frame[7] | frame[8] << 8, bool(frame[4] & L_MORE)))
        return False
    air.lose = note
    for n in range(3):
        assert root.downlink.send(1, b"\x42c%d" % n)
    assert root.downlink.send(2, b"\x42other")
    air.run(60000)
    assert air.heard.get(1) == [b"\x42c0", b"\x42c1", b"\x42c2"] and air.heard.get(2) == [b"\x42other"]
    to_one = [more for dst, more in sent if dst == 1]
    assert to_one[0] and to_one[1] and not to_one[-1] and sent.count((2, False)) == 1
