"""The floor of any Python worker: `python worker.py`'s set-up, but RQ's SimpleWorker in burst
mode, so every job runs warm in this one process with no fork (the throughput case's no-op floor).

`python -m bench.worker_proc QUEUE [QUEUE ...]` (DATABASE_URL / REDIS_URL from the environment).
"""
from __future__ import annotations

import sys

from rq.worker import SimpleWorker

from deltacrown import create_app
from deltacrown.queue import configure_logging, make_worker


def main(argv) -> int:
    app = create_app()
    configure_logging("WARNING")
    worker = make_worker(app, argv or ["default"], worker_class=SimpleWorker)
    worker.work(burst=True, logging_level="WARNING")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
