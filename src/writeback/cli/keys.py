"""`writeback keys rotate`: re-seal every stored credential with the first key of
WRITEBACK_SECRET_KEYS, so the keys after it can be retired."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import click

from writeback import bootstrap
from writeback.adapters.crypto import FernetSealer, Reseal
from writeback.adapters.db.engine import session_factory
from writeback.adapters.db.repositories import SqlAlchemyUnitOfWork


@dataclass
class RotationReport:
    counts: dict[str, int] = field(default_factory=lambda: {str(r): 0 for r in Reseal})
    # Re-saved by someone else between our read and our write: already under the current key.
    changed_meanwhile: int = 0
    unreadable_ids: list[int] = field(default_factory=list)

    def summary(self, dry_run: bool) -> dict[str, object]:
        return {
            **self.counts,
            "changed_meanwhile": self.changed_meanwhile,
            "unreadable_connection_ids": self.unreadable_ids,
            "dry_run": dry_run,
        }


def rotate_credentials(
    uow: Callable[[], SqlAlchemyUnitOfWork],
    sealer: FernetSealer,
    *,
    batch_size: int,
    dry_run: bool,
    progress: Callable[[int], None],
) -> RotationReport:
    """Keyset pages by connection id, one transaction per page. Each write is conditional on the
    ciphertext it was computed from, so running beside workers (which only read credentials) or
    beside an API saving new ones never loses a write, and a second run finds nothing to do."""
    report = RotationReport()
    after = 0
    while True:
        with uow() as tx:
            page = tx.connections.sealed_after(after, batch_size)
            for connection_id, sealed in page:
                outcome, resealed = sealer.reseal(sealed)
                if outcome is Reseal.UNREADABLE:
                    report.unreadable_ids.append(connection_id)
                elif outcome is Reseal.RESEALED and not dry_run:
                    if not tx.connections.replace_sealed(connection_id, sealed, resealed):
                        report.changed_meanwhile += 1
                        continue
                report.counts[str(outcome)] += 1
            tx.commit()
        if not page:
            return report
        after = page[-1][0]
        progress(len(page))


@click.group()
def keys() -> None:
    """Credential encryption keys (WRITEBACK_SECRET_KEYS)."""


@keys.command("rotate")
@click.option("--batch-size", type=click.IntRange(1, 5000), default=200, show_default=True)
@click.option("--dry-run", is_flag=True, help="Count what would be re-sealed, change nothing.")
def rotate(batch_size: int, dry_run: bool) -> None:
    """Re-seal every stored PSA credential with the first key of WRITEBACK_SECRET_KEYS. Safe to
    run twice and beside running workers. Credentials no configured key opens are listed by
    connection id (exit status 1), never fatal."""
    container = bootstrap.build()
    uow = partial(SqlAlchemyUnitOfWork, session_factory(container.engine))
    with uow() as tx:
        total = tx.connections.count_sealed()
    with click.progressbar(length=total, label="re-sealing", file=sys.stderr) as bar:
        report = rotate_credentials(
            uow, container.sealer, batch_size=batch_size, dry_run=dry_run, progress=bar.update
        )
    container.close()
    click.echo(json.dumps(report.summary(dry_run)))
    if report.unreadable_ids:
        raise SystemExit(1)
