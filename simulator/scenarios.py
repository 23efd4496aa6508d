"""Layouts: where the concentrator (index 0) and the modules stand, and the loss between them.

Loss = 25.2 dB at 1 m (free space at 433.9 MHz) + 10 n log10(d) + walls and
floors. Shadowing and its slow variation are added by radio.Channel.
"""


import numpy as np

PL_1M_DB = 25.2  # free-space loss at 1 m, 433.9 MHz


def _log_distance(pos, exponent):
    d = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=2))
    return PL_1M_DB + 10.0 * exponent * np.log10(np.maximum(d, 1.0))


def block(n_modules=240, rng=None):
    """Multi-storey blocks: buildings of 10 floors x 4 modules in two rows, 50 m apart.

    Indoors n = 2.8, 10 dB per floor crossed, 8 dB per exterior wall; the
    concentrator sits in the ground-floor stairwell of the first building.
    """
    floors, per_floor = 10, 4
    per_building = floors * per_floor
    pos, bld, floor = [(5.0, 6.0, 0.0)], [0], [0]
    for m in range(n_modules):
        b, k = divmod(m, per_building)
        f, s = divmod(k, per_floor)
        bx, by = (b % 3) * 50.0, (b // 3) * 50.0
        pos.append((bx + 5.0 + 10.0 * s, by + 6.0, 3.0 * f))
        bld.append(b)
        floor.append(f)
    pos = np.array(pos)
    loss = _log_distance(pos, 2.8)
    bld, floor = np.array(bld), np.array(floor)
    loss += 10.0 * np.abs(floor[:, None] - floor[None, :])
    loss += 16.0 * (bld[:, None] != bld[None, :])
    return pos, loss


def chain(n_modules=240, hops=30, rng=None):
    """A street of houses 80 m apart, ``n_modules / hops`` modules each, the concentrator at one end.

    Outdoors n = 3.3 plus two exterior walls; every house between two others
    blocks them by 25 dB more, so the chain is exactly ``hops`` deep.
    """
    per_house = max(1, n_modules // hops)
    pos, house = [(0.0, 0.0, 0.0)], [0]
    for m in range(n_modules):
        h = min(m // per_house, hops - 1) + 1
        k = m % per_house
        pos.append((80.0 * h + 4.0 * (k % 4), 8.0 * (k // 4 % 2), 3.0 * (k // 8)))
        house.append(h)
    pos = np.array(pos)
    house = np.array(house)
    loss = _log_distance(pos, 3.3)
    apart = np.abs(house[:, None] - house[None, :])
    loss += np.where(apart > 0, 16.0, 0.0) + 25.0 * np.maximum(apart - 1, 0)
    return pos, loss


def rural(n_modules=240, rng=None):
    """Scattered farmhouses over 2.4 x 2.4 km, the concentrator on the one in the middle.

    n = 2.7 over open ground, two exterior walls per link: a typical hop is 150-250 m.
    """
    rng = rng or np.random.default_rng(0)
    pos = np.vstack([[0.0, 0.0, 0.0], np.column_stack([rng.uniform(-1200.0, 1200.0, (n_modules, 2)),
                                                      np.ones(n_modules)])])
    loss = _log_distance(pos, 2.7) + 16.0
    return pos, loss


SCENARIOS = {"block": block, "chain": chain, "rural": rural}
