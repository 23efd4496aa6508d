"""A module's side of an update, stage by stage (docs/ota.md)::

    offer(envelope)  check the vendor's signature, device class and sequence; start or resume
    put_table(table) the page-hash table the manifest signed
    put_page(i, d)   any order, any repeats; missing_pages() says what to resend
    install()        verify the whole image, unpack it into the inactive slot, make it the trial image
    -- reboot --     Slots.boot() counts the trial boot (or returns to the previous slot)
    confirm()        after the self-test: registers readable, network joined

A power cut at any point leaves the module on a valid image: the active slot
is replaced only by the atomic switch of the state record, and only to a slot
whose unpacked files hash to the signed image digest.
"""

from firmware.common.ota.archive import unpack
from firmware.common.ota.download import Download
from firmware.common.ota.manifest import VENDOR_BALANS, check_applicable, open_envelope
from firmware.common.ota.slots import ENVELOPE_FILE, TABLE_FILE, Slots, make_dirs, remove_tree, write_atomic
from protocol.errors import AuthError, ProtocolError


class Updater:
    def __init__(self, flash_dir, vendor_key, class_id, vendor_id=VENDOR_BALANS):
        self.vendor_key = vendor_key
        self.class_id = class_id
        self.vendor_id = vendor_id
        self.slots = Slots(flash_dir)
        self.download = Download(self.slots.root)
        session = self.download.manifest
        if session is not None and session.seq <= self.slots.load().newest_refused():
            self.download.clear()  # a power cut came after the switch, before the clean-up

    def offer(self, envelope, battery_mv):
        """Accept the update ``envelope`` announces and return its manifest, or raise ProtocolError.

        AuthError: not signed by the vendor. ReplayError: not newer than the
        installed image. ProtocolError: another device class, a low battery, or
        the running image is still on trial. Re-offering the session's own
        envelope resumes it.
        """
        if self.download.envelope == bytes(envelope):
            return self.download.manifest
        state = self.slots.load()
        if state.trial:
            raise ProtocolError("busy: the running image is still on trial")
        manifest = open_envelope(envelope, self.vendor_key)
        check_applicable(manifest, self.vendor_id, self.class_id, state.newest_refused())
        if battery_mv < manifest.min_battery_mv:
            raise ProtocolError("battery %d mV below the update's %d mV" % (battery_mv, manifest.min_battery_mv))
        self.download.start(envelope, manifest)
        return manifest

    def put_table(self, table):
        self._need_session()
        self.download.put_table(table)

    def put_page(self, index, data):
        self._need_session()
        self.download.put_page(index, data)

    def missing_pages(self):
        self._need_session()
        return self.download.missing_pages()

    def install(self):
        """Verify the received image, unpack it into the inactive slot and switch to it on trial."""
        self._need_session()
        d = self.download
        if not d.complete():
            raise ProtocolError("image incomplete: %d pages missing" % len(d.missing_pages()))
        if not d.verify_image():
            raise AuthError("stored image does not match its manifest; damaged pages marked missing")
        slot = 1 - self.slots.load().active
        dest = self.slots.slot_dir(slot)
        remove_tree(dest)
        make_dirs(dest)
        try:
            unpack(d.image_path(), dest, d.manifest.image_sha256)
        except ProtocolError:
            # Signed but unusable (a vendor's mistake): never try this image again.
            remove_tree(dest)
            self.slots.refuse(d.manifest.seq)
            d.clear()
            raise
        # the signed envelope and table stay with the slot: the module serves the image it runs
        write_atomic(dest + "/" + ENVELOPE_FILE, d.envelope)
        write_atomic(dest + "/" + TABLE_FILE, d.table)
        self.slots.switch(slot, d.manifest.seq)
        d.clear()

    def confirm(self):
        """The trial image passed its self-test: keep it."""
        return self.slots.confirm()

    def _need_session(self):
        if self.download.manifest is None:
            raise ProtocolError("no update in progress")
