"""Profile outbox event jobs the way worker.py runs them now: a WarmWorker in this process
(burst), handle_event in-process. Writes a pyinstrument text profile and prints events/s.

`python -m bench.profile_events [--database sqlite|postgresql] [--events N] [--output FILE]`
(PostgreSQL on BENCH_DATABASE_URL; PROFILE_ALL=1 shows the library frames pyinstrument hides,
e.g. the pool's checkout inside a statement). The numbers in bench/FINDINGS.md came from this.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_events", description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--output", type=Path, help="text profile here (default: print it)")
    args = parser.parse_args(argv)

    from pyinstrument import Profiler

    from deltacrown.queue import QUEUE_NOTIFICATIONS, make_worker, prepare_for_forking

    from .cases.workers import _notification_event_jobs
    from .harness import QUICK, BenchEnv, ScratchDatabases, redis_for_bench, temp_workdir

    workdir = temp_workdir()
    databases = ScratchDatabases(workdir)
    try:
        with redis_for_bench(workdir) as (redis_url, _):
            env = BenchEnv(args.database, databases.url(args.database), redis_url, QUICK, workdir)
            try:
                env.reset()
                prepare, enqueue, check = _notification_event_jobs(env)
                prepare(50)  # warm-up: statements compiled, pool filled, as in a running worker.py
                enqueue()
                prepare_for_forking(env.app)
                make_worker(env.app, [QUEUE_NOTIFICATIONS], name=f"profile-warmup-{os.getpid()}").work(
                    burst=True, logging_level="WARNING")
                prepare(args.events)
                enqueue()
                worker = make_worker(env.app, [QUEUE_NOTIFICATIONS], name=f"profile-{os.getpid()}")
                profiler = Profiler(interval=0.0005)
                started = time.perf_counter()
                profiler.start()
                worker.work(burst=True, logging_level="WARNING")
                profiler.stop()
                elapsed = time.perf_counter() - started
                check()
            finally:
                env.dispose()
    finally:
        databases.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    text = profiler.output_text(unicode=True, color=False, show_all=bool(os.environ.get("PROFILE_ALL")))
    summary = f"{args.database}: {args.events} events in {elapsed:.2f} s = {args.events / elapsed:.0f} events/s " \
              f"(profiled, so slower than unprofiled)\n"
    if args.output:
        args.output.write_text(summary + text)
    else:
        sys.stdout.write(summary + text)
    print(summary, file=sys.stderr, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
