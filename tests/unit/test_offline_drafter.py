from __future__ import annotations

from datetime import UTC, datetime

from writeback.adapters.llm.offline import OfflineDrafter
from writeback.domain.model import AiSession, JobKind

SECTIONS = [
    "## Problem",
    "## What we've confirmed",
    "## What we've tried",
    "## Current hypothesis",
    "## Suggested next steps",
]


def _session() -> AiSession:
    now = datetime.now(UTC)
    return AiSession(
        account_id=1,
        user_id=1,
        session_type="chat",
        intake_type="free_text",
        created_at=now,
        updated_at=now,
        intake_content={"text": "Outlook keeps asking for a password"},
        conversation_messages=[
            {"role": "user", "content": "It started after the MFA rollout."},
            {"role": "assistant", "content": "Cleared cached credentials."},
            {"role": "assistant", "content": "Likely a stale token in the WAM broker."},
        ],
    )


def test_escalation_package_has_the_five_sections_in_order() -> None:
    markdown = OfflineDrafter().draft(JobKind.ESCALATE, _session()).markdown
    positions = [markdown.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "It started after the MFA rollout." in markdown
    assert "stale token" in markdown.split("## Current hypothesis")[1]


def test_resolution_note_is_deterministic() -> None:
    drafter = OfflineDrafter()
    first = drafter.draft(JobKind.RESOLVE, _session())
    assert first == drafter.draft(JobKind.RESOLVE, _session())
    assert first.drafter == "offline-template"
    assert "Outlook keeps asking for a password" in first.markdown
