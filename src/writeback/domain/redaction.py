"""Secrets are cut out of session text before it leaves for a model. What was cut is kept, so a
draft that comes back carrying one of them can be refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# (kind, pattern); the secret is group "secret" when present, else the whole match.
DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"(?P<secret>-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)",
    ),
    ("bearer", r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})"),
    ("connection_string", r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:(?P<secret>[^\s@/]+)@"),
    ("connection_string", r"(?i);\s*(?:password|pwd)\s*=\s*(?P<secret>[^;\s]+)"),
    (
        "password",
        r"(?i)\b(?:password|passwd|passphrase|pass|pw)\b\s*(?:is|:|=)\s*"
        r"(?P<secret>[\"']?[^\s\"',;]{3,}[\"']?)",
    ),
    (
        "api_key",
        r"(?i)\b(?:api[_-]?key|secret|token|access[_-]?key|client[_-]?secret)\b"
        r"\s*(?:is|:|=)\s*(?P<secret>[\"']?[A-Za-z0-9._~+/=-]{8,}[\"']?)",
    ),
    ("api_key", r"\b(?P<secret>(?:sk|pk|rk)-[A-Za-z0-9_-]{16,})"),
    ("api_key", r"\b(?P<secret>AKIA[0-9A-Z]{16})\b"),
    ("api_key", r"\b(?P<secret>gh[pousr]_[A-Za-z0-9]{20,})\b"),
    ("api_key", r"\b(?P<secret>xox[abposr]-[A-Za-z0-9-]{10,})\b"),
    ("jwt", r"\b(?P<secret>eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})\b"),
)


@dataclass(frozen=True)
class Redacted:
    text: str
    secrets: frozenset[str]


class Redactor:
    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        patterns = [*DEFAULT_PATTERNS, *(("custom", p) for p in extra_patterns)]
        self._patterns = [(kind, re.compile(pattern)) for kind, pattern in patterns]

    def redact(self, text: str) -> Redacted:
        found: set[str] = set()
        for kind, pattern in self._patterns:
            text = pattern.sub(_replacer(kind, found), text)
        return Redacted(text=text, secrets=frozenset(found))


def _replacer(kind: str, found: set[str]) -> Callable[[re.Match[str]], str]:
    """Replace the secret part of a match with a placeholder, remembering the secret."""

    def replace(match: re.Match[str]) -> str:
        group: int | str = "secret" if "secret" in match.re.groupindex else 0
        secret = match.group(group)
        if not secret or secret.startswith("[REDACTED:"):  # already cut by an earlier pattern
            return match.group(0)
        found.add(secret.strip("\"'"))
        offset = match.start(0)
        start, end = (i - offset for i in match.span(group))
        whole = match.group(0)
        return f"{whole[:start]}[REDACTED:{kind}]{whole[end:]}"

    return replace
