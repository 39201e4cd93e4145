# SPDX-License-Identifier: Apache-2.0
"""Check counting shared by the integration tests: exit 0 when all held."""
import sys


class Results:
    def __init__(self, name):
        self.name = name
        self.failed = 0
        self.count = 0

    def check(self, cond, what):
        self.count += 1
        print(("  ok   " if cond else "  FAIL ") + what, flush=True)
        if not cond:
            self.failed += 1
        return cond

    def done(self):
        print("%s: %d checks, %d failed" % (self.name, self.count, self.failed))
        sys.exit(1 if self.failed else 0)
