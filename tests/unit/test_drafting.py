"""Validation before posting, rendering with guaranteed headings, and the preview cache."""

from __future__ import annotations

import pytest

from tests.unit.conftest import World
from writeback.domain.drafting import (
    ESCALATION_HEADINGS,
    DraftPolicy,
    render_escalation,
    render_resolution,
    violations,
)
from writeback.domain.errors import DraftRejected, InvalidInput
from writeback.domain.model import Draft, JobKind, PromptInput

PROMPT = PromptInput(JobKind.RESOLVE, "intake", (), None, frozenset({"Hunter2!x"}))
ESCALATION = PromptInput(JobKind.ESCALATE, "intake", (), None, frozenset())


def test_rendered_escalation_always_has_five_sections_in_order() -> None:
    markdown = render_escalation("", [], [], "", [])
    assert [line[3:] for line in markdown.splitlines() if line.startswith("## ")] == list(
        ESCALATION_HEADINGS
    )
    assert violations(markdown, ESCALATION, DraftPolicy()) == []


def test_rendered_resolution_adds_customer_steps_only_when_there_are_some() -> None:
    assert "If it happens again" not in render_resolution("i", "r", [])
    assert "- Restart the app" in render_resolution("i", "r", ["Restart the app"])


@pytest.mark.parametrize(
    ("markdown", "reason"),
    [
        ("See [the fix](https://evil.example/login)", "evil.example"),
        ("![pixel](http://tracker.example/p.gif)", "tracker.example"),
        ("Go to https://bit.ly/xyz now", "bit.ly"),
        ("visit www.phish.example today", "www.phish.example"),
        ("<https://evil.example>", "evil.example"),
        ("Your password was Hunter2!x", "secret"),
        ("x" * 9000, "characters long"),
        ("   ", "empty"),
    ],
)
def test_unsafe_drafts_are_refused_with_the_reason(markdown: str, reason: str) -> None:
    found = violations(markdown, PROMPT, DraftPolicy())
    assert found and reason in "; ".join(found)


def test_allowlisted_link_hosts_pass() -> None:
    policy = DraftPolicy(allowed_link_hosts=frozenset({"support.acme-msp.example"}))
    assert violations("[KB](https://support.acme-msp.example/kb/42)", PROMPT, policy) == []


def test_an_escalation_missing_a_section_is_refused() -> None:
    assert violations("## Problem\nx", ESCALATION, DraftPolicy())


def test_previews_are_cached_per_session_state_and_kind(world: World) -> None:
    session_id = world.session(ticket_id=None)

    def preview(kind: JobKind) -> tuple[Draft, bool]:
        return world.jobs.preview(world.principal, session_id, kind)

    first, cached_first = preview(JobKind.RESOLVE)
    again, cached_again = preview(JobKind.RESOLVE)
    other_kind, cached_other = preview(JobKind.ESCALATE)
    assert (cached_first, cached_again, cached_other) == (False, True, False)
    assert first == again and other_kind.markdown.startswith("## Problem\ndrafted escalate")
    assert world.drafter.calls == 2

    session = world.store.sessions[session_id]
    session.conversation_messages = [
        *session.conversation_messages,
        {"role": "user", "content": "It is back."},
    ]
    assert preview(JobKind.RESOLVE)[1] is False  # the state changed
    assert world.drafter.calls == 3


def test_an_invalid_draft_is_refused_not_cached_and_not_trimmed(world: World) -> None:
    session_id = world.session(ticket_id=None)
    world.drafter.markdown = "Fixed. Details: https://evil.example/x"
    with pytest.raises(DraftRejected) as caught:
        world.jobs.preview(world.principal, session_id, JobKind.RESOLVE)
    assert caught.value.code == "draft_invalid" and "evil.example" in caught.value.message
    assert world.store.drafts == {}


@pytest.mark.parametrize(
    ("markdown", "named"),
    [
        ("Fixed ![x](https://evil.example/pixel.png)", "evil.example"),
        ("Fixed. The admin password: Hunter2Secret!", "secret"),
    ],
)
def test_technician_markdown_passes_the_same_policy_as_drafts(
    world: World, markdown: str, named: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        world.request(world.session(ticket_id=None), markdown=markdown)
    assert caught.value.field == "markdown" and named in caught.value.message
    assert world.store.jobs == {}


def test_chat_text_cannot_forge_a_heading_of_the_note() -> None:
    note = render_resolution("Printer\n## Resolution\nforged", "Restarted", ["# also forged"])
    headings = [line for line in note.splitlines() if line.startswith("#")]
    assert headings == ["## Issue", "## Resolution", "## If it happens again"]
