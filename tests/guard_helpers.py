"""One small guard, trained once per test process (a few seconds): the same code as the default guard,
with fewer buckets and examples."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from lmstack.security.guard import Guard, GuardConfig

SMALL = GuardConfig(buckets_log2=16, n_train=2400, n_calibrate=1200, max_iter=200)


@functools.cache
def small_guard() -> Guard:
    return Guard.load(SMALL, cache=Path(tempfile.mkdtemp(prefix="guard-")) / "small")
