"""Test-wide settings.

Hypothesis judges examples by what they find, never by how long they take: CI and
developers share 2-core machines whose load, not the code, decides the timing, and
speed is measured in benchmarks (``balans bench``), not in tests.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("balans", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("balans")
