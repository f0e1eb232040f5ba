"""Target statuses per board, by id or by name, checked before any note is posted."""

from __future__ import annotations

import pytest

from tests.unit.conftest import World
from writeback.domain.model import (
    AccountSettings,
    BoardStatus,
    JobKind,
    JobState,
    StatusMapping,
    Ticket,
)
from writeback.domain.status_targets import resolve_target


def _map(world: World, *mappings: tuple[str, int | None, int | str]) -> None:
    world.store.status_maps[world.connection_id] = [
        StatusMapping(
            connection_id=world.connection_id,
            kind=kind,
            board_id=board,
            status_id=status if isinstance(status, int) else None,
            status_name=status if isinstance(status, str) else None,
        )
        for kind, board, status in mappings
    ]


def _ticket_on(world: World, ticket: str, board: int) -> int:
    world.provider.add_ticket(
        ticket, status_id=world.provider.statuses[board][0].id, board_id=board
    )
    return world.session(ticket)


def test_each_board_gets_its_own_status_by_name(world: World) -> None:
    _map(world, ("resolve", 1, "Resolved"), ("resolve", 21, "complete"))
    help_desk = world.request(_ticket_on(world, "5001", 1))
    projects = world.request(_ticket_on(world, "5002", 21))
    world.run(help_desk)
    world.run(projects)
    assert world.store.jobs[help_desk].verified_status_id == 42
    assert world.store.jobs[projects].verified_status_id == 18  # "Complete" on board 21


def test_the_any_board_entry_and_then_the_account_default_are_fallbacks(world: World) -> None:
    world.configure_statuses(resolved=42, escalated=43)
    _map(world, ("escalate", None, "Escalated"))
    on_projects = world.request(_ticket_on(world, "5003", 21), JobKind.ESCALATE)
    on_help_desk = world.request(_ticket_on(world, "5004", 1), JobKind.RESOLVE)
    world.run(on_projects)
    world.run(on_help_desk)
    assert world.store.jobs[on_projects].verified_status_id == 19  # board 21's "Escalated"
    assert world.store.jobs[on_help_desk].verified_status_id == 42  # resolved_status_id


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Done and dusted", "status_not_found"),
        (42, "status_not_found"),
        ("Old Closed", "status_inactive"),
    ],
)
def test_a_target_the_board_lacks_fails_the_job_before_any_note(
    world: World, status: int | str, code: str
) -> None:
    _map(world, ("resolve", None, status))
    board = 21 if status == 42 else 1  # 42 exists, but only on board 1
    job_id = world.request(_ticket_on(world, f"6{code[-4:]}{board}", board))

    world.run(job_id)

    job = world.store.jobs[job_id]
    assert (job.state, job.error_code) == (JobState.FAILED, code)
    assert world.provider.count("post_note") == 0


def test_board_statuses_are_fetched_once_for_a_burst_of_jobs(world: World) -> None:
    _map(world, ("resolve", None, "Resolved"))
    for n in range(5):
        world.run(world.request(_ticket_on(world, f"700{n}", 1)))
    assert world.provider.count("list_statuses") == 1


def test_nothing_configured_costs_no_psa_read(world: World) -> None:
    world.run(world.request(world.session("8001")))
    assert world.provider.count("get_ticket") == 0


def test_a_kind_with_no_target_for_the_tickets_board_names_its_setting() -> None:
    """The map covers another board only and the account has no fallback for escalations:
    the note goes out, the status stays, and the reason names the setting to fill in."""
    projects_only = [StatusMapping(connection_id=1, kind="escalate", board_id=21, status_id=19)]
    statuses_read: list[int | None] = []

    def board_statuses(board_id: int | None) -> list[BoardStatus]:
        statuses_read.append(board_id)
        return []

    target = resolve_target(
        JobKind.ESCALATE,
        lambda: Ticket("9001", status_id=1, status_name="New", board_id=1),
        projects_only,
        AccountSettings(account_id=1, resolved_status_id=42),
        board_statuses,
    )

    assert target.status_id is None and statuses_read == []
    assert "for board 1 (no status map entry, escalated_status_id not set)" in str(
        target.skipped_reason
    )
