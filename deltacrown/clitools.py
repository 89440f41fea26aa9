"""Flask CLI commands for jobs: each runs its service here, or puts its job(s) on the queue.

`job_command` builds one from a declaration: the command's name, the job(s) it
enqueues with `--enqueue`, its click parameters (decorators on the declared
function, as on any click command) and the function that runs the service here
and prints the result. A ServiceError exits 1 with its message.
"""
from __future__ import annotations

import inspect
from typing import Callable

import click
from flask.cli import with_appcontext

from .errors import ServiceError
from .extensions import db

enqueue_option = click.option("--enqueue", is_flag=True,
                              help="Put the job on the queue for a worker instead of running it here.")


def enqueue_and_report(job_fn, *args, **kwargs) -> None:
    """Enqueue `job_fn` (a @background_job) and print its id; exit 1 if Redis is unreachable."""
    try:
        job = job_fn.enqueue(*args, **kwargs)
    except Exception as exc:  # redis raises several connection error types
        raise click.ClickException(f"could not enqueue (is REDIS_URL reachable?): {exc}") from None
    click.echo(f"Enqueued {job_fn.__name__} as job {job.id} on queue {job_fn.queue_name}.")


def job_command(name: str, *jobs, check: Callable | None = None, select: Callable | None = None):
    """Turn `run_here(**params)` into `flask <name> [params] [--enqueue]`.

    check(**params): runs first in both modes, raises a click exception to refuse.
    select(**params): which of `jobs` --enqueue puts on the queue (default: all, in order).
    Each job gets the command's parameters that its signature names, in its order.
    """

    def decorate(run_here):
        def command(enqueue, **params):
            if check is not None:
                check(**params)
            if enqueue:
                for job in (select(**params) if select is not None else jobs):
                    enqueue_and_report(job, *[params[p] for p in inspect.signature(job).parameters if p in params])
                return
            try:
                run_here(**params)
            except ServiceError as exc:
                raise click.ClickException(exc.message) from None

        command.__doc__ = run_here.__doc__
        enqueue_option(command)  # first: click lists __click_params__ backwards, so --enqueue comes last
        command.__click_params__ += getattr(run_here, "__click_params__", [])
        return click.command(name)(with_appcontext(command))

    return decorate


def row_must_exist(model, param: str) -> Callable:
    """A `check` for job_command: exit 1 unless the `model` row whose id is `param` exists (None: no check)."""
    label = model.__name__.lower()

    def check(**params):
        row_id = params[param]
        if row_id is not None and db.session.get(model, row_id) is None:
            raise click.ClickException(f"{label} {row_id} does not exist")

    return check


class ProgressBar:
    """A click progress bar fed by a service's on_progress(done, total) callback."""

    def __init__(self, label: str):
        self.label, self.bar, self.done = label, None, 0

    def __call__(self, done, total):
        if total is None:  # unknown length: a running count on stderr
            click.echo(f"\r{self.label}: {done}", nl=False, err=True)
            self.done = done
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is None and self.done:
            click.echo("", err=True)
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def run_with_progress(label: str, service, *args):
    """Run `service(*args, on_progress=...)` here with a progress bar on stderr."""
    progress = ProgressBar(label)
    try:
        return service(*args, on_progress=progress)
    finally:
        progress.close()
