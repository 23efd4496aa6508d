"""Secure over-the-air update of a module's application (docs/ota.md).

- ``sha512``, ``ed25519``: the vendor signature, verified in pure Python on the module
- ``manifest``: the signed SUIT-style manifest and its page-hash table
- ``archive``: the image, a flat archive of the application's files
- ``slots``: two slots, the state record, trial boot, confirmation and rollback
- ``download``: pages into the inactive slot, resumable from a saved bitmap
"""
