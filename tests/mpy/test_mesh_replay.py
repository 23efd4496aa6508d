# Replays across resets, on real MicroPython (and CPython): the highest frame counters a station
# took are kept in flash (firmware/common/mesh/seen.py), so a reboot does not reopen its window.
from firmware.common.mesh.node import MeshNode
from firmware.common.mesh.root import SEEN_SAVE_MS, MeshRoot
from firmware.common.mesh.seen import KeptWindow
from mesh_air import NET_ID, NET_KEY, Air, module_key
from protocol.errors import ReplayError
from protocol.frame import CONCENTRATOR, T_DATA

CHAIN = ((0, 1), (1, 2))


def joined():
    air = Air(CHAIN)
    air.run(600000)
    assert all(s.joined for a, s in air.stations.items() if a)
    return air


def refused(window, src, counter, now=0):
    try:
        window.accept(src, counter, now)
    except ReplayError:
        return True
    return False


def test_a_command_recorded_on_air_is_not_taken_again_after_the_module_reboots():
    air = joined()
    taped = []

    def tape(sender, receiver, frame):  # someone records what reaches module 2 from the concentrator
        if receiver == 2 and frame[3] & 0x0F == T_DATA and frame[9] | frame[10] << 8 == CONCENTRATOR:
            taped.append(frame)
        return False
    air.lose = tape
    assert air.root.downlink.send(2, b"\x13open")
    air.run(60000)
    assert air.heard.get(2) == [b"\x13open"] and taped
    old = air.stations[2]
    node = MeshNode(old.hal, 2, NET_ID, NET_KEY, module_key(2), seed=7)  # the battery was changed
    node.on_downlink = air._recorder(air.heard, 2)
    air.stations[2] = node
    node.hal.rx.append(taped[-1])
    node.poll()
    assert air.heard.get(2) == [b"\x13open"]  # acted on once, before the reboot only


def test_a_concentrator_restart_keeps_the_counters_it_saved():
    air = joined()
    for i in range(3):
        assert air.stations[1].uplink.send(b"\x99r%d" % i, urgent=True)
        air.run(SEEN_SAVE_MS // 2)
    highest = air.root._window.window.highest(1)
    assert highest is not None
    root = MeshRoot(air.root.hal, NET_ID, NET_KEY, {a: module_key(a) for a in (1, 2)})
    kept = root._window.window.highest(1)
    assert kept is not None and highest - kept < 30  # saved within the last SEEN_SAVE_MS
    assert refused(root._window, 1, 0) and refused(root._window, 1, kept)
    assert not refused(root._window, 1, highest + 1)


def test_a_kept_window_writes_at_most_every_hold_and_reads_back_what_it_wrote():
    path = Air(CHAIN).stations[1].hal.flash + "/seen-test"
    w = KeptWindow(path, 4, 1000, 0)
    w.accept(5, 10, 0)  # nothing saved yet: the hold has not passed
    assert KeptWindow(path, 4, 1000, 0).window.highest(5) is None
    w.accept(6, 3, 1000)
    again = KeptWindow(path, 4, 1000, 0)
    assert again.window.highest(5) == 10 and again.window.highest(6) == 3
    assert refused(again, 5, 10) and refused(again, 5, 9) and not refused(again, 5, 11)
