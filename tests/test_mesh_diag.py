"""A module's DIAG report carries its mesh counters and its route, from the real mesh station."""

from protocol import messages
from simulator.network import District


def test_diag_reports_radio_counters_and_route():
    d = District("block", 4, 0.25, 3).run()
    try:
        modules = [n for n in d.world.nodes if not n.is_root]
        reports = [messages.decode(n.app.diag()) for n in modules]
        for node, diag in zip(modules, reports):
            station = node.mesh
            assert diag.tx == (station.sent + station.relayed) & 0xFFFF and diag.tx > 0
            assert diag.rx == station.received & 0xFFFF and diag.rx > 0
            assert diag.retries == station.retries & 0xFFFF
            assert diag.parent == station.routing.preferred.addr
            assert 1 <= diag.hops == station.routing.depth
            assert diag.rssi == max(-127, min(127, int(station.routing.preferred.rssi))) != -127
    finally:
        d.close()
