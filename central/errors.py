"""The one error type of central's imports: every bad line is named, none silently dropped."""


class LineError:
    """One rejected input line: which file, which line (1 = the header), and why."""

    def __init__(self, source, line, reason):
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self):
        return "%s:%d: %s" % (self.source, self.line, self.reason)

    def __repr__(self):
        return "LineError(%r, %d, %r)" % (self.source, self.line, self.reason)


class ImportFailed(ValueError):
    """A whole file could not be read (missing, wrong header); ``errors`` lists the lines."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors[:5]))
