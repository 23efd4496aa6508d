"""Benchmarks of the simulator: ``balans bench mesh_block`` and friends (docs/benchmarks.md)."""

from simulator.network import simulate


def _scenario(name):
    def bench(args):
        quick = getattr(args, "quick", False)
        return simulate(name, 24 if quick else 240, 0.25 if quick else 1.0, 1)
    return bench


BENCHMARKS = {"mesh_" + n: _scenario(n) for n in ("block", "chain", "rural")}
