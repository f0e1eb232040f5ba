from __future__ import annotations

from datetime import UTC, datetime

from writeback.adapters.llm.offline import OfflineDrafter
from writeback.domain.drafting import ESCALATION_HEADINGS, prompt_input
from writeback.domain.model import AiSession, JobKind
from writeback.domain.redaction import Redactor


def _session(**changes: object) -> AiSession:
    now = datetime.now(UTC)
    session = AiSession(
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
    for name, value in changes.items():
        setattr(session, name, value)
    return session


def _draft(kind: JobKind, session: AiSession) -> str:
    return OfflineDrafter().draft(prompt_input(kind, session, Redactor())).markdown


def test_escalation_package_has_the_five_sections_in_order() -> None:
    markdown = _draft(JobKind.ESCALATE, _session())
    positions = [markdown.index(f"## {heading}\n") for heading in ESCALATION_HEADINGS]
    assert positions == sorted(positions)
    assert "It started after the MFA rollout." in markdown
    assert "stale token" in markdown.split("## Current hypothesis")[1]


def test_resolution_note_is_deterministic_and_fingerprinted_by_its_input() -> None:
    drafter = OfflineDrafter()
    prompt = prompt_input(JobKind.RESOLVE, _session(), Redactor())
    assert drafter.draft(prompt) == drafter.draft(prompt)
    assert drafter.draft(prompt).drafter == "offline-template"
    assert "Outlook keeps asking for a password" in drafter.draft(prompt).markdown
    changed = prompt_input(JobKind.RESOLVE, _session(psa_ticket_id="9"), Redactor())
    assert drafter.fingerprint(prompt) != drafter.fingerprint(changed)
