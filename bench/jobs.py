"""Job functions the benchmark enqueues (importable by worker processes: `bench.jobs.<name>`)."""
from __future__ import annotations

import os

RSS_KEY = "bench:memory:rss"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def noop() -> None:
    """The RQ baseline: a job that does nothing (it still runs in the worker's app context)."""
    return None


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def memory_probe(i: int, sample_every: int) -> None:
    """A stand-in worker job touching the database through the app's session; records the
    worker's RSS in Redis every `sample_every` jobs (keyed by the job's number)."""
    from deltacrown.accounts.models import User
    from deltacrown.extensions import db
    from deltacrown.queue import get_redis

    db.session.get(User, 1 + i % 100)
    db.session.commit()
    if i % sample_every == 0:
        get_redis().hset(RSS_KEY, str(i), rss_bytes())
