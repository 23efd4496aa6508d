"""The agent's end of broadcast authentication (edge_agent/broadcasts.py): tags, disclosures, anchors."""

import json
import os

from edge_agent.broadcasts import ANCHOR_RETRY_S, ANCHORS_IN_FLIGHT, REANCHOR_S, RENEW_S, TIME_SYNC_S, BroadcastKeys
from protocol import link, messages, tesla

T0 = 1767225600


class Link:
    def __init__(self):
        self.frames = []
        self.ids = iter(range(1, 10 ** 6))

    def send(self, frame):
        self.frames.append(link.unpack(frame))

    def next_id(self):
        return next(self.ids)

    def take(self):
        out = [(fields[0], fields[1], messages.decode(tail)) for ftype, fields, tail in self.frames
               if ftype == link.L_CMD]
        self.frames = []
        return out


def ready(keys, line, now, modules=()):
    while keys.pump(line.send, now, modules, line.next_id) and not keys.chain.grow(0):
        pass


def test_a_tagged_broadcast_checks_out_once_its_key_is_disclosed_and_not_before(tmp_path):
    keys, line = BroadcastKeys(str(tmp_path), lambda: T0), Link()
    ready(keys, line, T0)
    line.take()  # the first hourly time sync
    payload = messages.GroupCmd(0, 7, 1, 900).encode()
    tagged = messages.decode(keys.tag(payload, T0 + 1))
    anchor = keys.chain.key(tagged.interval - tesla.DISCLOSE_AFTER - 1)
    due = keys.start + (tagged.interval + tesla.DISCLOSE_AFTER) * tesla.INTERVAL_S
    keys.pump(line.send, due - 1, (), line.next_id)
    assert not [m for _, _, m in line.take() if type(m) is messages.Disclose]
    assert tesla.undisclosed(keys.start, tagged.interval, due - tesla.CLOCK_BEHIND_S - 1)
    keys.pump(line.send, due, (), line.next_id)
    (cid, dst, disclose), = line.take()
    assert dst == 0xFFFF and disclose.interval == tagged.interval
    assert tesla.reaches(disclose.key, tesla.DISCLOSE_AFTER + 1, anchor)
    assert tesla.tag(disclose.key, tagged.interval, tagged.payload) == tagged.tag and tagged.payload == payload


def test_the_hourly_time_sync_goes_tagged(tmp_path):
    keys, line = BroadcastKeys(str(tmp_path), lambda: T0), Link()
    ready(keys, line, T0)
    keys.pump(line.send, T0 + TIME_SYNC_S, (), line.next_id)
    syncs = [m for _, _, m in line.take() if type(m) is messages.Tagged]
    assert [messages.decode(m.payload).unix for m in syncs] == [T0, T0 + TIME_SYNC_S]


def test_modules_are_anchored_a_few_at_a_time_and_again_after_a_lost_result(tmp_path):
    keys, line = BroadcastKeys(str(tmp_path), lambda: T0), Link()
    modules = list(range(0x10, 0x20))
    ready(keys, line, T0, modules)
    sent = [(cid, dst, m) for cid, dst, m in line.take() if type(m) is messages.SetAnchor]
    assert len(sent) == ANCHORS_IN_FLIGHT
    for cid, dst, m in sent:
        assert m.interval <= (T0 - keys.start) // tesla.INTERVAL_S - tesla.DISCLOSE_AFTER  # already public
        assert tesla.reaches(keys.chain.key(m.interval + 5), 5, m.key)
    assert keys.on_result(sent[0][0], messages.ST_OK) and keys.on_result(sent[1][0], messages.ST_BUSY)
    assert not keys.on_result(99999, messages.ST_OK)  # not ours: the agent's own command results
    keys.pump(line.send, T0 + 1, modules, line.next_id)
    again = [dst for _, dst, m in line.take() if type(m) is messages.SetAnchor]
    assert sent[1][1] in again and sent[0][1] not in again and len(again) == 2
    keys.pump(line.send, T0 + ANCHOR_RETRY_S, modules, line.next_id)  # two results never came
    assert {sent[2][1], sent[3][1]} <= {dst for _, dst, m in line.take() if type(m) is messages.SetAnchor}
    assert keys.status(modules)["anchored"] == 1 and len(keys.status(modules)["waiting"]) == len(modules) - 1
    reloaded = BroadcastKeys(str(tmp_path), lambda: T0)
    assert list(reloaded.anchored) == [sent[0][1]] and reloaded.chain.key(5) == keys.chain.key(5)
    assert oct(os.stat(tmp_path / "tesla.json").st_mode & 0o777) == "0o600"


def test_a_chain_near_its_end_is_replaced_and_every_module_anchored_again(tmp_path):
    keys, line = BroadcastKeys(str(tmp_path), lambda: T0), Link()
    ready(keys, line, T0, [0x10])
    (cid, _, _), = [x for x in line.take() if type(x[2]) is messages.SetAnchor]
    keys.on_result(cid, messages.ST_OK)
    old_seed, late = keys.seed, keys.chain.end() - RENEW_S
    ready(keys, line, late, [0x10])
    assert keys.seed != old_seed and keys.start > T0
    assert [dst for _, dst, m in line.take() if type(m) is messages.SetAnchor] == [0x10]
    assert json.loads((tmp_path / "tesla.json").read_text())["anchored"] == {}


def test_an_anchored_module_is_anchored_again_a_day_later(tmp_path):
    # a module replaced or re-flashed under its address has lost its anchor, and nothing else says so
    now = [T0]
    keys, line = BroadcastKeys(str(tmp_path), lambda: now[0]), Link()
    ready(keys, line, T0, [0x10])
    (cid, _, _), = [x for x in line.take() if type(x[2]) is messages.SetAnchor]
    keys.on_result(cid, messages.ST_OK)
    keys.pump(line.send, T0 + REANCHOR_S - 1, [0x10], line.next_id)
    assert not [x for x in line.take() if type(x[2]) is messages.SetAnchor]
    keys.pump(line.send, T0 + REANCHOR_S, [0x10], line.next_id)
    (_, dst, anchor), = [x for x in line.take() if type(x[2]) is messages.SetAnchor]
    assert dst == 0x10 and anchor.start == keys.start
