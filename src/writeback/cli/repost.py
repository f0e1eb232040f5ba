"""`writeback repost-stuck`: re-post stuck jobs in bulk, safely repeatable."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import timedelta

import click

from writeback import bootstrap
from writeback.domain.durations import parse_duration
from writeback.domain.model import (
    FINAL_STATES,
    IN_FLIGHT_STATES,
    JobFilter,
    JobState,
    WritebackJob,
    utcnow,
)
from writeback.domain.repost import RepostReport, Result, repost_one, stream_jobs

STATES = tuple(str(state) for state in (JobState.FAILED, *IN_FLIGHT_STATES))
# PSA requests one writeback makes: ticket read, note post, ticket read + status change, and the
# verifying read, plus a board status list now and then.
REQUESTS_PER_JOB = 5.5
FOLLOW_INTERVAL = 2.0
COLUMNS = "{:<36}  {:>8}  {:>8}  {:<8}  {:<8}  {:<17}  {:<26}  {:>9}"


class Duration(click.ParamType[timedelta]):
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
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow the re-posted jobs until they end, with an estimate from the PSA budgets.",
)
def repost_stuck(
    kind: str,
    states: tuple[str, ...],
    older_than: timedelta | None,
    account_id: int | None,
    connection_id: int | None,
    batch_size: int,
    dry_run: bool,
    wait: bool,
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
    report, reposted = RepostReport(), Counter[str]()
    followed: list[str] = []
    with click.progressbar(jobs, length=total, label="re-posting", file=sys.stderr) as bar:
        for job in bar:
            result = repost_one(job, jobs=container.jobs)
            report.add(result)
            if result is Result.REPOSTED:
                reposted[job.tenant] += 1
                followed.append(job.id)
    summary = {str(result): report.counts[result] for result in Result}
    if wait and followed:
        summary.update(_follow(container, followed, reposted))
    click.echo(json.dumps(summary))
    if report.counts[Result.ERROR]:
        raise SystemExit(1)


def _follow(
    container: bootstrap.Container, job_ids: list[str], tenants: Counter[str]
) -> dict[str, int]:
    """Follow the re-posted jobs to the end: they go out at each tenant's request budget, so
    the estimate is the slowest tenant's share divided by its rate."""
    estimate = budget_estimate(container, tenants)
    click.echo(
        f"{len(job_ids)} job(s) re-posted across {len(tenants)} tenant(s); at the PSAs' request "
        f"budgets this takes about {timedelta(seconds=round(estimate))}.",
        err=True,
    )
    done = 0
    with click.progressbar(length=len(job_ids), label="completing", file=sys.stderr) as bar:
        while done < len(job_ids):
            time.sleep(FOLLOW_INTERVAL)
            with container.read_uow() as tx:
                states = tx.jobs.count_by_state(job_ids)
            now_done = sum(n for state, n in states.items() if state in FINAL_STATES)
            bar.update(now_done - done)
            done = now_done
    return {f"ended_{state}": n for state, n in states.items()}


def budget_estimate(container: bootstrap.Container, tenants: Counter[str]) -> float:
    seconds = 0.0
    with container.read_uow() as tx:
        for tenant, count in tenants.items():
            kind, _, ident = tenant.partition(":")
            connection = tx.connections.get(int(ident)) if kind == "psa" else None
            if connection is not None:
                rate = container.rates[connection.provider].per_second
                seconds = max(seconds, count * REQUESTS_PER_JOB / rate)
    return seconds
