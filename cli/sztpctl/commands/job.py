"""`sztpctl job`: a write the server runs as a job, looked up or followed after the command
that started it stopped following it (interrupted, or `apply --timeout`).

The server keeps a job for an hour after it ends, in the memory of the instance that took the
write: behind a load balancer, ask the same instance (or use `sztpctl diff`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .declarative import failure_status, show_result
from .output import ExitStatus
from .remote import (
    OutputFormat,
    OutputOption,
    TimeoutOption,
    connect,
    emit,
    exit_with,
    working,
)

app = typer.Typer(help="Writes the server runs as jobs (a large apply).", no_args_is_help=True)

JobArgument = Annotated[str, typer.Argument(help="The job's id, as `apply` named it.")]


@app.command("show")
def show(job_id: JobArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """A job's state: running (how far it got), succeeded or failed (and why).

    Example:

        sztpctl job show 3f2a9c0d41b7e655
    """
    with connect() as client:
        job = client.job(job_id)
    emit(job, output, lambda: typer.echo(describe(job)))


@app.command("wait")
def wait(ctx: typer.Context, job_id: JobArgument, timeout: TimeoutOption = None) -> None:
    """Follow a job to its end and show what its write changed, as `apply` would have.

    Example:

        sztpctl job wait 3f2a9c0d41b7e655
    """
    from sztp.errors import ApiConflictError, ApiValidationError, JobStillRunning

    with connect() as client, working(f"job {job_id}") as say:
        try:
            result = client.follow_job(
                job_id,
                wait=timeout,
                on_progress=lambda done, total: say(f"job {job_id}: {done}/{total} checked"),
            )
        # The write's own failure exits as `apply` would have.
        except (JobStillRunning, ApiConflictError, ApiValidationError) as exc:
            exit_with(ctx, exc, failure_status(exc, ExitStatus.ERROR))
    show_result(result, "applied")


def describe(job: dict[str, Any]) -> str:
    """One line: who started the job, and how it stands."""
    progress = job.get("progress") or {}
    head = f"job {job.get('id')} of {job.get('actor')}"
    if job.get("state") == "running":
        return f"{head}: running, {progress.get('done')}/{progress.get('total')} checked"
    if job.get("state") == "failed":
        error = job.get("error") or {}
        field = f" ({error['field']})" if error.get("field") else ""
        return f"{head}: failed (HTTP {job.get('status')}): {error.get('message')}{field}"
    result = job.get("result") or {}
    changes = len(result.get("changes") or [])
    dry = "dry run, " if result.get("dry_run") else ""
    return f"{head}: succeeded, {dry}{changes} change(s), revision {result.get('revision')}"
