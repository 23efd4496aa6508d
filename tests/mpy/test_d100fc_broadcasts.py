# Broadcast trust on the real interpreter: a module commissioned with a uTESLA anchor acts on a
# tagged ripple command only once its key is disclosed, refuses a forged one, and keeps its
# anchor on LittleFS over a reboot (firmware/d100fc/broadcasts.py).
from d100fc_flash import MOUNT, mount
from protocol import messages as m
from protocol import tesla
from tests.d100fc_scenario import ChainKeeper, make

START = 1780272000  # 2026-06-01 00:00 UTC


def test_tagged_ripple_acts_after_disclosure_and_a_forgery_never():
    mount()
    hal, up, mod = make(MOUNT, START)
    mod.on_downlink(m.SetGroups(1, bytes([7, 0])).encode())
    keeper = ChainKeeper(hal, START - 3600, 2000)
    assert m.decode(mod.on_downlink(keeper.anchor())).status == m.ST_OK
    i = keeper.now_interval()
    mod.on_broadcast(keeper.tagged(m.GroupCmd(2, 7, 1, 0), key=bytes(16)))  # forged
    mod.on_broadcast(keeper.tagged(m.GroupCmd(3, 7, 1, 0)))
    assert hal.relay_closed is True
    hal.advance(tesla.DISCLOSE_AFTER * tesla.INTERVAL_S)
    mod.on_broadcast(keeper.disclose(i))
    assert hal.relay_closed is False
    refused = [e.value for e in (m.decode(p) for p, _, _ in up.sent) if type(e) is m.Event
               and e.code == m.EV_BROADCAST_REFUSED]
    assert refused == [m.Tagged.TYPE]
    mod.power_fail()
    _, _, mod2 = make(MOUNT, hal.unix_time())
    assert mod2.broadcasts.anchor.interval == i
