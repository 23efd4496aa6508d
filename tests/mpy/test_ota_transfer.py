# An update down a chain of modules in T_OTA payloads: the concentrator's Source, then each
# module's Receiver serving the next. Runs on MicroPython (RAM LittleFS) and on CPython.
import ota_world as world
from firmware.common.ota import manifest, transfer
from firmware.common.ota.slots import Slots
from firmware.common.ota.updater import Updater
from ota_world import raises
from protocol.errors import ProtocolError

HOPS = 4
NEW = world.bundle(world.image(2, extra=500), 2)
LOSS_EVERY = 7  # every 7th fragment is lost on air


class Chain:
    def __init__(self, battery=(3600,) * HOPS):
        envelope, table, img = NEW
        m = manifest.Manifest.decode(envelope[:manifest.MANIFEST_LEN])
        self.source = transfer.Source(envelope, table, img, m)
        self.flashes = [world.fresh_flash("/flash%d" % i) for i in range(HOPS)]
        self.battery = list(battery)
        self.nodes = [self.receiver(i) for i in range(HOPS)]
        self.sent = 0
        self.corrupt = None  # (hop, part, index): flip a byte of that unit once, on that hop

    def receiver(self, i):
        return transfer.Receiver(Updater(self.flashes[i], world.VENDOR_KEY, manifest.CLASS_D100FC),
                                 lambda: self.battery[i])

    def round(self):
        """Every hop: the child says what it needs, its parent sends that unit if it holds it."""
        for i, child in enumerate(self.nodes):
            parent = self.source if i == 0 else self.nodes[i - 1]
            kind, session, part, index, status, _ = transfer.parse(child.need())
            if status != transfer.NEEDS and session == self.source.session:
                continue
            data = parent.unit(part, index)
            if data is None:
                continue
            for payload in transfer.fragments(self.source.session, part, index, data):
                self.sent += 1
                if self.sent % LOSS_EVERY == 0:
                    continue
                if self.corrupt == (i, part, index):
                    payload = payload[:-1] + bytes([payload[-1] ^ 1])
                    self.corrupt = None
                _, s, p, x, number, chunk = transfer.parse(payload)
                child.on_fragment(s, p, x, number, chunk)

    def statuses(self):
        return [transfer.parse(n.need())[4] for n in self.nodes]

    def run(self, rounds=400):
        for _ in range(rounds):
            if all(s != transfer.NEEDS for s in self.statuses()):
                return True
            self.round()
        return False


def test_an_update_crosses_the_chain_through_losses_and_installs_everywhere():
    chain = Chain()
    assert chain.run()
    assert chain.statuses() == [transfer.DONE] * HOPS
    for flash in chain.flashes:  # relays install once their children have every page
        Updater(flash, world.VENDOR_KEY, manifest.CLASS_D100FC).install()
        assert world.running_version(Slots(flash).boot()) == 2
        assert Slots(flash).confirm() and world.kept_intact(flash)


def test_a_page_corrupted_on_one_hop_stops_there_and_is_sent_again():
    chain = Chain()
    chain.corrupt = (1, transfer.IMAGE, 3)
    assert chain.run()
    assert chain.corrupt is None  # it was sent, refused by hop 1, and asked for again
    img = NEW[2]
    m = chain.nodes[3].updater.download.manifest
    assert chain.nodes[3].unit(transfer.IMAGE, 3) == img[3 * m.page_size:4 * m.page_size]


def test_a_relay_that_loses_power_resumes_from_its_bitmap():
    chain = Chain()
    for _ in range(12):
        chain.round()
    before = chain.nodes[1].updater.download.missing_pages()
    chain.nodes[1] = chain.receiver(1)  # power cut: a new Receiver over what the flash kept
    after = chain.nodes[1].updater.download.missing_pages()
    assert after == before and len(after) < chain.nodes[1].updater.download.manifest.pages
    assert chain.run()


def test_a_module_on_a_low_battery_refuses_and_says_so():
    chain = Chain(battery=(3600, manifest.MIN_BATTERY_MV - 1, 3600, 3600))
    chain.run(rounds=60)
    assert chain.statuses()[:2] == [transfer.DONE, transfer.REFUSED]
    assert chain.nodes[2].unit(transfer.IMAGE, 0) is None  # nothing reaches past it


def test_messages_that_are_not_ota_transfer_messages_are_refused():
    for payload in (b"", b"\x30\x01", b"\x31" + bytes(6) + b"x", b"\x30" + bytes(6), b"\x32" + bytes(7),
                    b"\x30\x00\x00\x03" + bytes(3) + b"x", b"\x30" + bytes(6) + bytes(33)):
        raises(ProtocolError, transfer.parse, payload)


def test_an_activation_names_its_update_and_the_seconds_left():
    assert tuple(transfer.parse_activate(transfer.activate(7, transfer.ACTIVATE_S))) == (7, transfer.ACTIVATE_S)
    for payload in (b"", b"\x33\x07\x00\x58", b"\x32\x07\x00\x58\x02", transfer.activate(7, 600) + b"x"):
        raises(ProtocolError, transfer.parse_activate, payload)
