"""`writeback flower`: Flower for the pipeline, never unauthenticated."""

from __future__ import annotations

import os
import sys

import click

CELERY_APP = "writeback.workers.celery_app"


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True)
@click.option(
    "--max-tasks",
    default=10_000,
    show_default=True,
    help="Tasks Flower keeps in memory; it is a live view, not a history.",
)
def flower(address: str, port: int, max_tasks: int) -> None:
    """Start Flower with basic auth from FLOWER_BASIC_AUTH (user:password[,user:password]).

    The credentials stay in the environment, out of the command line and `ps`."""
    auth = os.environ.get("FLOWER_BASIC_AUTH", "")
    pairs = [pair.partition(":") for pair in auth.split(",") if pair]
    if not pairs or any(not user or not password for user, _, password in pairs):
        raise click.ClickException(
            "Flower must not run unauthenticated: set FLOWER_BASIC_AUTH=user:password"
        )
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "flower",
        f"--address={address}",
        f"--port={port}",
        f"--max_tasks={max_tasks}",
    ]
    os.execv(sys.executable, args)  # Flower reads FLOWER_BASIC_AUTH from the environment
