# Every refusal and recovery of an update, on MicroPython (RAM LittleFS) and, through
# tests/test_ota.py, on CPython (a temp directory). Each ends on a valid image, registers intact.
import ota_world as world
from firmware.common.ota import ed25519, manifest
from firmware.common.ota.slots import MAX_TRIAL_BOOTS, Slots, exists
from firmware.common.ota.updater import Updater
from ota_world import raises
from protocol.errors import AuthError, ProtocolError, ReplayError

# RFC 8032 section 7.1, TEST 2 and TEST 3
RFC8032 = (
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
)


def updater(flash):
    return Updater(flash, world.VENDOR_KEY, manifest.CLASS_D100FC)


def on_version_1(flash):
    state = Slots(flash).load()
    return world.running_version(Slots(flash).boot()) == 1 and state.seq == 1 and world.kept_intact(flash)


def test_rfc8032_vectors_verify_and_altered_ones_do_not():
    for public, message, signature in RFC8032:
        public, message, signature = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
        assert ed25519.verify(public, message, signature)
        assert not ed25519.verify(public, message + b"\x00", signature)
        assert not ed25519.verify(public, message, signature[:31] + bytes([signature[31] ^ 0x80]) + signature[32:])


def test_an_update_installs_after_a_confirmed_trial_and_keeps_registers():
    flash = world.fresh_flash()
    assert world.update(flash, world.bundle(world.image(2, extra=300), 2))
    assert world.running_version(Slots(flash).boot()) == 2 and world.kept_intact(flash)
    assert not exists(flash + "/ota/dl")


def test_a_forged_signature_is_refused():
    flash = world.fresh_flash()
    envelope, table, img = world.bundle(world.image(2), 2)
    forged = envelope[:40] + bytes([envelope[40] ^ 1]) + envelope[41:]  # seq changed after signing
    raises(AuthError, updater(flash).offer, forged, world.BATTERY_MV)
    other_key = world.bundle(world.image(2), 2, seed=world.OTHER_SEED)[0]
    raises(AuthError, updater(flash).offer, other_key, world.BATTERY_MV)
    world.power_on(flash, (forged, table, img))
    assert on_version_1(flash) and not exists(flash + "/ota/dl")


def test_an_older_or_equal_sequence_is_refused():
    flash = world.fresh_flash()
    for seq in (0, 1):
        old = world.bundle(world.image(2), seq)
        raises(ReplayError, updater(flash).offer, old[0], world.BATTERY_MV)
        world.power_on(flash, old)
        assert on_version_1(flash)


def test_another_device_class_is_refused():
    flash = world.fresh_flash()
    other = world.bundle(world.image(2), 2, class_id=manifest.CLASS_J100UC)
    error = raises(ProtocolError, updater(flash).offer, other[0], world.BATTERY_MV)
    assert "class" in str(error)
    world.power_on(flash, other)
    assert on_version_1(flash)


def test_a_low_battery_refuses_the_update():
    flash = world.fresh_flash()
    envelope = world.bundle(world.image(2), 2)[0]
    error = raises(ProtocolError, updater(flash).offer, envelope, manifest.MIN_BATTERY_MV - 1)
    assert "battery" in str(error)


def test_a_truncated_page_table_or_image_is_refused():
    flash = world.fresh_flash()
    envelope, table, img = world.bundle(world.image(2, extra=200), 2)
    u = updater(flash)
    m = u.offer(envelope, world.BATTERY_MV)
    raises(AuthError, u.put_table, table[:-1])
    u.put_table(table)
    last = m.pages - 1
    raises(ProtocolError, u.put_page, last, img[last * m.page_size:-1])
    for i in range(last):
        u.put_page(i, img[i * m.page_size:(i + 1) * m.page_size])
    assert "incomplete" in str(raises(ProtocolError, u.install))
    assert u.missing_pages() == [last]
    assert on_version_1(flash)


def test_a_signed_but_truncated_archive_is_refused_for_good():
    flash = world.fresh_flash()
    cut_short = world.bundle(world.image(2, extra=100)[:-3], 2)
    assert "truncated" in str(raises(ProtocolError, world.power_on, flash, cut_short))
    state = Slots(flash).load()
    assert (state.active, state.trial, state.failed_seq) == (0, 0, 2)
    world.power_on(flash, cut_short)  # refused now, not tried again
    assert on_version_1(flash) and not exists(flash + "/ota/slot1")


def test_a_page_corrupted_in_transit_is_asked_for_again():
    flash = world.fresh_flash()
    new = world.bundle(world.image(2, extra=300), 2)
    world.power_on(flash, new, corrupt=(1, 3), drop=(4,))
    assert updater(flash).missing_pages() == [1, 3, 4]
    assert on_version_1(flash)
    assert world.update(flash, new)


def test_a_running_trial_refuses_another_offer():
    flash = world.fresh_flash()
    world.power_on(flash, world.bundle(world.image(2), 2))
    assert Slots(flash).load().trial
    newer = world.bundle(world.image(3), 3)[0]
    assert "trial" in str(raises(ProtocolError, updater(flash).offer, newer, world.BATTERY_MV))


def test_a_trial_that_never_confirms_returns_to_the_previous_image():
    flash = world.fresh_flash()
    new = world.bundle(world.image(2), 2)
    world.power_on(flash, new)
    for _ in range(MAX_TRIAL_BOOTS):
        assert world.running_version(world.power_on(flash, new, joined=False)) == 2
    assert world.running_version(world.power_on(flash, new)) == 1
    state = Slots(flash).load()
    assert (state.seq, state.trial, state.failed_seq) == (1, 0, 2)
    assert not world.update(flash, new, starts=2)  # the failed image is not taken again
    assert world.update(flash, world.bundle(world.image(3), 3))
    assert world.kept_intact(flash)


def test_a_damaged_trial_slot_returns_at_once():
    flash = world.fresh_flash()
    world.power_on(flash, world.bundle(world.image(2), 2))
    with open(flash + "/ota/slot1/app.py", "ab") as f:
        f.write(b"#")
    assert world.running_version(Slots(flash).boot()) == 1
