"""One contract for every PsaProvider: the in-memory fake and each real provider talking to its
simulator over HTTP (harnesses in conftest.py). A fake that passes the same suite cannot drift
from the real thing."""

from __future__ import annotations

import pytest

from tests.contract.conftest import Harness
from writeback.domain.errors import PsaNotFound, PsaRejected, PsaTransientError
from writeback.domain.model import NoteType


def test_posts_a_customer_visible_resolution_note(psa: Harness) -> None:
    ticket = psa.new_ticket()
    note = psa.provider.post_note(ticket, "Fixed it.\n\n— ref abc123", NoteType.RESOLUTION)
    assert note.ticket_id == ticket and note.id
    assert psa.note_types(ticket) == [NoteType.RESOLUTION]


def test_posts_an_internal_only_handoff_note(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.provider.post_note(ticket, "## Problem\nx", NoteType.INTERNAL_ANALYSIS)
    assert psa.note_types(ticket) == [NoteType.INTERNAL_ANALYSIS]


def test_finds_its_own_note_by_marker_and_nothing_else(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.provider.post_note(ticket, "someone else's note", NoteType.RESOLUTION)
    mine = psa.provider.post_note(
        ticket, "ours\n\n— psa-writeback ref 0123abcd", NoteType.RESOLUTION
    )
    assert psa.provider.find_note(ticket, "psa-writeback ref 0123abcd") == mine
    assert psa.provider.find_note(ticket, "psa-writeback ref ffffffff") is None


def test_reads_the_ticket_status(psa: Harness) -> None:
    s = psa.statuses
    ticket = psa.new_ticket(status_id=s.in_progress)
    read = psa.provider.get_ticket(ticket)
    assert (read.id, read.status_id, read.status_name, read.board_id) == (
        ticket,
        s.in_progress,
        s.in_progress_name,
        s.board_id,
    )


def test_changes_the_status_and_a_fresh_read_shows_it(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.provider.update_ticket_status(ticket, psa.statuses.resolved)
    assert psa.provider.get_ticket(ticket).status_id == psa.statuses.resolved


def test_lists_boards_and_their_statuses_with_flags(psa: Harness) -> None:
    s = psa.statuses
    assert s.board_id in {b.id for b in psa.provider.list_boards()}
    statuses = {status.id: status for status in psa.provider.list_statuses(s.board_id)}
    assert statuses[s.resolved].closed and not statuses[s.resolved].inactive
    assert not statuses[s.new].inactive and not statuses[s.new].closed
    if s.lists_inactive:
        assert statuses[s.inactive].inactive
    else:  # only active statuses are listed
        assert s.inactive not in statuses
    assert statuses[s.in_progress].name == s.in_progress_name
    assert {status.board_id for status in statuses.values()} == {s.board_id}


def test_a_healthy_connection_checks_out(psa: Harness) -> None:
    psa.provider.check_connection()


def test_an_inactive_status_is_rejected(psa: Harness) -> None:
    with pytest.raises(PsaRejected):
        psa.provider.update_ticket_status(psa.new_ticket(), psa.statuses.inactive)


def test_statuses_are_board_scoped_or_the_psa_has_one_board(psa: Harness) -> None:
    foreign = psa.statuses.foreign
    if foreign is None:  # Autotask, HaloPSA: statuses are global
        assert [b.id for b in psa.provider.list_boards()] == [None]
        return
    board_id, _ = foreign
    ticket = psa.new_ticket(board_id=board_id)
    with pytest.raises(PsaRejected, match=f"not found for Service Board {board_id}"):
        psa.provider.update_ticket_status(ticket, psa.statuses.resolved)


def test_an_unknown_ticket_is_not_found(psa: Harness) -> None:
    with pytest.raises(PsaNotFound):
        psa.provider.get_ticket("999999")


def test_a_status_change_accepted_but_not_applied_shows_only_on_re_read(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("status_not_applied", ticket, "update_ticket_status")
    psa.provider.update_ticket_status(ticket, psa.statuses.resolved)  # the PSA said yes
    assert psa.provider.get_ticket(ticket).status_id == psa.statuses.new


def test_rate_limit_is_transient_and_carries_retry_after(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("rate_limit", ticket, "get_ticket", retry_after=7)
    with pytest.raises(PsaTransientError) as caught:
        psa.provider.get_ticket(ticket)
    assert caught.value.retry_after == 7
    assert psa.provider.get_ticket(ticket).status_id == psa.statuses.new  # once only


def test_server_errors_are_transient(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("server_error", ticket, "update_ticket_status", status=503)
    with pytest.raises(PsaTransientError):
        psa.provider.update_ticket_status(ticket, psa.statuses.resolved)


def test_a_slow_answer_past_the_timeout_is_transient(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("slow", ticket, "get_ticket")
    with pytest.raises(PsaTransientError):
        psa.provider.get_ticket(ticket)


def test_note_stored_then_connection_dropped_is_transient_and_findable(psa: Harness) -> None:
    ticket = psa.new_ticket()
    psa.inject("drop_after_store", ticket, "post_note")
    with pytest.raises(PsaTransientError):
        psa.provider.post_note(ticket, "body\n\n— psa-writeback ref dropped1", NoteType.RESOLUTION)
    assert psa.provider.find_note(ticket, "psa-writeback ref dropped1") is not None
    assert len(psa.note_types(ticket)) == 1
