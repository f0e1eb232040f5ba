"""The `writeback` command: bootstrap accounts and tokens, migrate, sweep, run locally."""

from __future__ import annotations

import dataclasses
import json

import click

from writeback import bootstrap
from writeback.adapters.db import migrate
from writeback.adapters.logs import configure_logging
from writeback.cli import dev, flower, keys, repost
from writeback.config import load_settings
from writeback.domain.errors import DomainError


def _emit(payload: dict[str, object]) -> None:
    """Machine-readable answers go to stdout alone; everything else goes to stderr."""
    click.echo(json.dumps(payload))


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level on stderr.")
def main(verbose: bool) -> None:
    settings = load_settings()
    configure_logging(settings.log_format, "INFO" if verbose else "WARNING")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations (the only way the schema is made)."""
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at revision {revision}", err=True)


@main.group()
def accounts() -> None:
    """Accounts."""


@accounts.command("create")
@click.argument("name")
def accounts_create(name: str) -> None:
    """Create an account with its first user and API token (shown once)."""
    container = bootstrap.build()
    try:
        issued = container.accounts.create_account(name)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    _emit({"account_id": issued.account_id, "user_id": issued.user_id, "token": issued.token})


@main.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@click.option("--account", "account_id", type=int, required=True)
def tokens_create(account_id: int) -> None:
    """Create a user and API token in an existing account (shown once)."""
    container = bootstrap.build()
    try:
        issued = container.accounts.create_token(account_id)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    _emit({"user_id": issued.user_id, "token": issued.token})


@main.command("sweep")
def sweep_once() -> None:
    """One sweep: recover lost deliveries, send unsent messages, admit held jobs (beat runs
    one every WRITEBACK_SWEEP_INTERVAL)."""
    _emit(dataclasses.asdict(bootstrap.build().scheduler.tick()))


main.add_command(dev.dev)
main.add_command(dev.demo)
main.add_command(dev.simulator)
main.add_command(repost.repost_stuck)
main.add_command(flower.flower)
main.add_command(keys.keys)
