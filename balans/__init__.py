"""The ``balans`` command line: one entry point for every part of the system."""
