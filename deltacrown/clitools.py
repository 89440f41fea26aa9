"""Shared behaviour of the job CLI commands: run in-process, or `--enqueue`."""
from __future__ import annotations

import click

enqueue_option = click.option("--enqueue", is_flag=True,
                              help="Put the job on the queue for a worker instead of running it here.")


def enqueue_and_report(job_fn, *args, **kwargs) -> None:
    """Enqueue `job_fn` (a @background_job) and print its id; exit 1 if Redis is unreachable."""
    try:
        job = job_fn.enqueue(*args, **kwargs)
    except Exception as exc:  # redis raises several connection error types
        raise click.ClickException(f"could not enqueue (is REDIS_URL reachable?): {exc}") from None
    click.echo(f"Enqueued {job_fn.__name__} as job {job.id} on queue {job_fn.queue_name}.")
