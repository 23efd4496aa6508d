"""Hours a module's reports did not reach us: kept as a few ranges, asked back from its archive.

Per module: a short list of [first_hour, count] ranges, oldest first. Bounded:
past MAX_RANGES the two closest ranges merge (asking back a few hours we have
costs airtime, not correctness: re-sent hours are dropped here or deduplicated
centrally), and hours older than the module's archive are given up and counted.
"""

from protocol.compat import const

MAX_RANGES = const(6)  # per module: 240 modules x 6 ranges stays a few KB
ARCHIVE_HOURS = const(45 * 24)  # D100FC keeps 45 days of hourly reports


class Gaps:
    def __init__(self):
        self.ranges = []
        self.given_up = 0  # hours that fell out of the archive window before they came back

    def missing(self):
        return sum(r[1] for r in self.ranges)

    def add(self, first, count):
        if count <= 0:
            return
        rs = self.ranges
        i = 0
        while i < len(rs) and rs[i][0] < first:
            i += 1
        rs.insert(i, [first, count])
        self._coalesce()
        while len(rs) > MAX_RANGES:
            self._merge_closest()

    def take(self, hour):
        """Remove ``hour`` if it is missing; True if it was."""
        rs = self.ranges
        for i in range(len(rs)):
            first, count = rs[i]
            if first <= hour < first + count:
                if count == 1:
                    rs.pop(i)
                elif hour == first:
                    rs[i][0] = first + 1
                    rs[i][1] = count - 1
                elif hour == first + count - 1:
                    rs[i][1] = count - 1
                else:
                    rs[i][1] = hour - first
                    rs.insert(i + 1, [hour + 1, first + count - hour - 1])
                    while len(rs) > MAX_RANGES:
                        self._merge_closest()
                return True
        return False

    def expire(self, now_hour):
        """Give up on hours the module no longer has in its archive."""
        oldest = now_hour - ARCHIVE_HOURS
        rs = self.ranges
        while rs and rs[0][0] < oldest:
            first, count = rs[0]
            gone = min(count, oldest - first)
            self.given_up += gone
            if gone == count:
                rs.pop(0)
            else:
                rs[0][0] = first + gone
                rs[0][1] = count - gone

    def first(self):
        """(first_hour, count) of the oldest missing range, or None."""
        return tuple(self.ranges[0]) if self.ranges else None

    def _coalesce(self):
        rs = self.ranges
        i = 0
        while i + 1 < len(rs):
            a, b = rs[i], rs[i + 1]
            if b[0] <= a[0] + a[1]:
                a[1] = max(a[0] + a[1], b[0] + b[1]) - a[0]
                rs.pop(i + 1)
            else:
                i += 1

    def _merge_closest(self):
        rs = self.ranges
        best = 0
        best_gap = None
        for i in range(len(rs) - 1):
            gap = rs[i + 1][0] - (rs[i][0] + rs[i][1])
            if best_gap is None or gap < best_gap:
                best, best_gap = i, gap
        a, b = rs[best], rs[best + 1]
        a[1] = b[0] + b[1] - a[0]
        rs.pop(best + 1)
