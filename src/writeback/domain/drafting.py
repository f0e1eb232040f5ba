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

from writeback.domain.errors import DraftRejected, InvalidInput
from writeback.domain.model import AiSession, Draft, JobKind, PromptInput
from writeback.domain.ports import Drafter
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


# A line of quoted text that markdown would read as a heading: ATX (`## x`) or a setext underline.
_HEADING_LINE = re.compile(r"^(\s{0,3})(#|=+\s*$|-+\s*$)", re.MULTILINE)


def _text(text: str) -> str:
    """Session text placed under our headings: it can never forge a heading of its own."""
    return _HEADING_LINE.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text.strip())


def _bullets(items: Sequence[str], empty: str) -> str:
    lines = [f"- {_text(' '.join(item.split()))}" for item in items if item.strip()]
    return "\n".join(lines) if lines else f"- {empty}"


def render_resolution(issue: str, resolution: str, customer_steps: Sequence[str]) -> str:
    parts = [f"## Issue\n{_text(issue)}", f"## Resolution\n{_text(resolution)}"]
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
        _text(problem) or "Not stated.",
        _bullets(confirmed, "Nothing confirmed yet."),
        _bullets(tried, "Nothing tried yet."),
        _text(hypothesis) or "No working hypothesis yet.",
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
class Prepared:
    """What a drafter would be sent for one session state, and the cache key of its draft."""

    prompt: PromptInput
    key: str


@dataclass(frozen=True)
class Drafting:
    """Draft one document for a session state, or check the technician's own. The caller owns
    the transaction: the cache is read and written through the unit of work it passes."""

    drafter: Drafter
    redactor: Redactor
    policy: DraftPolicy

    def prepare(self, kind: JobKind, session: AiSession) -> Prepared:
        prompt = prompt_input(kind, session, self.redactor)
        return Prepared(prompt, fingerprint(session.account_id, self.drafter.fingerprint(prompt)))

    def fresh(self, prepared: Prepared) -> Draft:
        """A new draft from the drafter, refused (never trimmed) when it breaks the policy."""
        draft = self.drafter.draft(prepared.prompt)
        problems = violations(draft.markdown, prepared.prompt, self.policy)
        if problems:
            raise DraftRejected(
                f"The {prepared.prompt.kind} draft was refused: it contains "
                + "; ".join(problems)
                + ".",
                "draft_invalid",
            )
        return draft

    def check_technician(self, kind: JobKind, session: AiSession, markdown: str) -> None:
        """Markdown a technician wrote goes to the customer too: the same policy applies, and
        a secret typed into it is caught by the same redaction that guards the model."""
        prompt = self.prepare(kind, session).prompt
        own = self.redactor.redact(markdown).secrets
        problems = [p for p in violations(markdown, prompt, self.policy) if "sections" not in p]
        if own:
            problems.append("a secret (a password, key or token)")
        if problems:
            raise InvalidInput(
                "markdown", "The markdown was refused: it contains " + "; ".join(problems) + "."
            )
