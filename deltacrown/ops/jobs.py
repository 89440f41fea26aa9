"""Diagnostic jobs: prove that a worker picks up what the web process enqueues."""
from __future__ import annotations

import os
import socket

from rq import get_current_job

from ..queue import QUEUE_DEFAULT, background_job


@background_job(queue=QUEUE_DEFAULT, retry_intervals=())
def ping(value):
    """Echo `value` with who ran it (host, pid, RQ worker name)."""
    job = get_current_job()
    return {
        "pong": value,
        "worker": getattr(job, "worker_name", None) if job else None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
