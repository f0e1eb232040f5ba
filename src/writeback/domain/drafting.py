"""Drafting the documents a writeback posts: what goes to a drafter (redacted), the sections it
must return, how they become markdown (headings guaranteed by our code), what a draft must pass
before it can be posted, and the preview cache keyed by exactly what went into the prompt."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from writeback.domain.errors import DraftRejected
from writeback.domain.model import AiSession, Draft, JobKind, PromptInput
from writeback.domain.ports import Drafter, UnitOfWork
from writeback.domain.redaction import Redactor

ESCALATION_HEADINGS = (
    "Problem",
    "What we've confirmed",
    "What we've tried",
    "Current hypothesis",
    "Suggested next steps",
)


def prompt_input(kind: JobKind, session: AiSession, redactor: Redactor) -> PromptInput:
    secrets: set[str] = set()

    def clean(text: str) -> str:
        redacted = redactor.redact(text)
        secrets.update(redacted.secrets)
        return redacted.text

    content = session.intake_content
    intake = content.get("text") if isinstance(content.get("text"), str) else None
    raw_intake = intake if intake is not None else json.dumps(content, sort_keys=True)
    return PromptInput(
        kind=kind,
        intake=clean(raw_intake),
        messages=tuple(
            (str(m.get("role")), clean(str(m.get("content") or "")))
            for m in session.conversation_messages
        ),
        ticket_id=session.psa_ticket_id,
        secrets=frozenset(secrets),
    )


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# The sections drafters return; rendering is ours, so headings and order are guaranteed.


def _bullets(items: Sequence[str], empty: str) -> str:
    lines = [f"- {' '.join(item.split())}" for item in items if item.strip()]
    return "\n".join(lines) if lines else f"- {empty}"


def render_resolution(issue: str, resolution: str, customer_steps: Sequence[str]) -> str:
    parts = [f"## Issue\n{issue.strip()}", f"## Resolution\n{resolution.strip()}"]
    if any(step.strip() for step in customer_steps):
        parts.append("## If it happens again\n" + _bullets(customer_steps, ""))
    return "\n\n".join(parts)


def render_escalation(
    problem: str,
    confirmed: Sequence[str],
    tried: Sequence[str],
    hypothesis: str,
    next_steps: Sequence[str],
) -> str:
    bodies = (
        problem.strip() or "Not stated.",
        _bullets(confirmed, "Nothing confirmed yet."),
        _bullets(tried, "Nothing tried yet."),
        hypothesis.strip() or "No working hypothesis yet.",
        _bullets(next_steps, "Continue diagnosis from the session transcript."),
    )
    return "\n\n".join(f"## {h}\n{b}" for h, b in zip(ESCALATION_HEADINGS, bodies, strict=True))


# Validation before anything can be posted: refused with reasons, never trimmed.

_LINK = re.compile(
    r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)|<(https?://[^>\s]+)>|\b(https?://[^\s)<>\]]+)", re.IGNORECASE
)
_WWW = re.compile(r"\bwww\.[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.IGNORECASE)


@dataclass(frozen=True)
class DraftPolicy:
    max_length: int = 8000
    allowed_link_hosts: frozenset[str] = frozenset()


def violations(markdown: str, prompt: PromptInput, policy: DraftPolicy) -> list[str]:
    found = []
    if not markdown.strip():
        found.append("the draft is empty")
    if len(markdown) > policy.max_length:
        found.append(f"the draft is {len(markdown)} characters long (limit {policy.max_length})")
    for match in _LINK.finditer(markdown):
        target = next(g for g in match.groups() if g)
        host = (urlsplit(target).hostname or "").lower()
        if host not in policy.allowed_link_hosts:
            found.append(f"a link or image to a host not on the allowlist: {host or target!r}")
    for match in _WWW.finditer(markdown):
        if match.group(0).lower() not in policy.allowed_link_hosts:
            found.append(f"a link to a host not on the allowlist: {match.group(0)!r}")
    if any(secret in markdown for secret in prompt.secrets):
        found.append("a secret that was redacted from the session")
    if prompt.kind is JobKind.ESCALATE:
        positions = [markdown.find(f"## {heading}\n") for heading in ESCALATION_HEADINGS]
        if -1 in positions or positions != sorted(positions):
            found.append("the five escalation sections, in order")
    return found


@dataclass(frozen=True)
class Drafting:
    """Draft (or reuse a cached draft of) one document for a session state."""

    drafter: Drafter
    redactor: Redactor
    policy: DraftPolicy

    def draft(self, tx: UnitOfWork, kind: JobKind, session: AiSession) -> tuple[Draft, bool]:
        prompt = prompt_input(kind, session, self.redactor)
        key = fingerprint(session.account_id, self.drafter.fingerprint(prompt))
        cached = tx.drafts.get(key)
        if cached is not None:
            return cached, True
        draft = self.drafter.draft(prompt)
        problems = violations(draft.markdown, prompt, self.policy)
        if problems:
            raise DraftRejected(
                f"The {kind} draft was refused: it contains " + "; ".join(problems) + ".",
                "draft_invalid",
            )
        tx.drafts.put(key, session.account_id, draft)
        tx.commit()
        return draft, False
