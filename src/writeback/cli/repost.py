"""`writeback repost-stuck`: re-post stuck jobs in bulk, safely repeatable."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from writeback import bootstrap
from writeback.domain.durations import parse_duration
from writeback.domain.model import JobFilter, WritebackJob, utcnow
from writeback.domain.repost import RepostReport, Result, repost_one, stream_jobs

STATES = ("failed", "queued", "retrying", "running")
COLUMNS = "{:<36}  {:>8}  {:>8}  {:<8}  {:<8}  {:<17}  {:<26}  {:>9}"


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: object, param: object, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc))


def _row(job: WritebackJob) -> str:
    age = utcnow() - job.created_at
    return COLUMNS.format(
        job.id,
        job.account_id,
        job.session_id,
        job.kind,
        job.state,
        job.step,
        job.error_code or "-",
        f"{int(age.total_seconds() // 60)}m",
    )


@click.command("repost-stuck")
@click.option(
    "--kind",
    type=click.Choice(["escalate", "resolve", "any"]),
    default="escalate",
    show_default=True,
)
@click.option(
    "--state",
    "states",
    type=click.Choice(STATES),
    multiple=True,
    help="Repeatable. Default: failed. In-flight states count only once overdue.",
)
@click.option("--older-than", type=Duration(), default=None, help="e.g. 30m, 2h, 1d")
@click.option("--account", "account_id", type=int, default=None)
@click.option("--connection", "connection_id", type=int, default=None, help="PSA connection id")
@click.option("--batch-size", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print what would be re-posted, change nothing.")
def repost_stuck(
    kind: str,
    states: tuple[str, ...],
    older_than: timedelta | None,
    account_id: int | None,
    connection_id: int | None,
    batch_size: int,
    dry_run: bool,
) -> None:
    """Re-post stuck jobs: failed ones resume where they stopped (a posted note is never posted
    again) and join their tenant's queue; jobs still in flight are the scheduler's. Safe to run
    twice or beside busy workers."""
    container = bootstrap.build()
    where = JobFilter(
        account_id=account_id,
        states=states or ("failed",),
        kinds=() if kind == "any" else (kind,),
        created_before=utcnow() - older_than if older_than else None,
        connection_id=connection_id,
    )
    jobs = stream_jobs(where, uow=container.uow, page_size=batch_size)
    if dry_run:
        click.echo(
            COLUMNS.format("job", "account", "session", "kind", "state", "step", "error", "age")
        )
        shown = 0
        for job in jobs:
            click.echo(_row(job))
            shown += 1
        click.echo(f"{shown} job(s) would be re-posted (dry run).", err=True)
        return
    with container.uow() as tx:
        total = tx.jobs.count(where)
    report = RepostReport()
    with click.progressbar(
        jobs, length=total, label="re-posting", file=click.get_text_stream("stderr")
    ) as bar:
        for job in bar:
            report.add(repost_one(job, jobs=container.jobs))
    click.echo(json.dumps({str(result): report.counts[result] for result in Result}))
    if report.counts[Result.ERROR]:
        raise SystemExit(1)
