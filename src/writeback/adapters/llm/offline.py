"""A deterministic drafter built from the session data alone: the service works without a model."""

from __future__ import annotations

from writeback.domain.drafting import fingerprint, render_escalation, render_resolution
from writeback.domain.model import Draft, JobKind, PromptInput

NAME = "offline-template"
VERSION = 1  # bump when the wording changes, so cached drafts are not reused


class OfflineDrafter:
    def fingerprint(self, prompt: PromptInput) -> str:
        return fingerprint(NAME, VERSION, prompt.fields())

    def draft(self, prompt: PromptInput) -> Draft:
        said = {
            role: [text for r, text in prompt.messages if r == role and text.strip()]
            for role in ("user", "assistant")
        }
        answers = said["assistant"]
        problem = prompt.intake.strip() or "No problem description was given."
        if prompt.kind is JobKind.RESOLVE:
            markdown = render_resolution(
                issue=problem,
                resolution=answers[-1] if answers else "The issue was resolved during the session.",
                customer_steps=[],
            )
        else:
            markdown = render_escalation(
                problem=problem,
                confirmed=said["user"],
                tried=answers[:-1],
                hypothesis=answers[-1] if answers else "",
                next_steps=[
                    "Review the session transcript and continue diagnosis from the "
                    "current hypothesis."
                ],
            )
        return Draft(markdown=markdown, drafter=NAME)
