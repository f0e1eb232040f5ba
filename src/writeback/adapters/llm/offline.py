"""A deterministic drafter built from the session data alone: the service works without a model."""

from __future__ import annotations

from typing import Any

from writeback.domain.model import AiSession, Draft, JobKind

NAME = "offline-template"


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def _messages(session: AiSession, role: str) -> list[str]:
    return [
        _text(m.get("content"))
        for m in session.conversation_messages
        if m.get("role") == role and _text(m.get("content"))
    ]


def _bullets(lines: list[str], empty: str) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else f"- {empty}"


class OfflineDrafter:
    def draft(self, kind: JobKind, session: AiSession) -> Draft:
        problem = _text(session.intake_content.get("text")) or "No problem description was given."
        answers = _messages(session, "assistant")
        reports = _messages(session, "user")
        if kind is JobKind.RESOLVE:
            resolution = answers[-1] if answers else "The issue was resolved during the session."
            markdown = f"## Issue\n{problem}\n\n## Resolution\n{resolution}"
        else:
            markdown = "\n\n".join(
                [
                    f"## Problem\n{problem}",
                    "## What we've confirmed\n" + _bullets(reports, "Nothing confirmed yet."),
                    "## What we've tried\n" + _bullets(answers[:-1], "No fixes attempted yet."),
                    "## Current hypothesis\n"
                    + (answers[-1] if answers else "No working hypothesis yet."),
                    "## Suggested next steps\n- Review the session transcript and continue "
                    "diagnosis from the current hypothesis.",
                ]
            )
        return Draft(markdown=markdown, drafter=NAME)
