"""The parts of BALANS that may offer commands and benchmarks.

A part offers commands in ``<part>/cli.py`` as ``COMMANDS = [(name, help, configure, run)]``
and benchmarks in ``<part>/bench.py`` as ``BENCHMARKS = {name: function}``. A part
without such a file offers none; one whose file fails to import fails loudly.
"""

import importlib
import importlib.util

PARTS = ("balans", "protocol", "firmware", "edge_agent", "central", "simulator", "tools.flash")


def offered(filename, attribute):
    """Yield ``attribute`` of ``<part>.<filename>`` for every part that has that file."""
    for part in PARTS:
        name = "%s.%s" % (part, filename)
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # the part's package itself is not in this checkout (yet)
            spec = None
        if spec is not None:
            yield getattr(importlib.import_module(name), attribute)
