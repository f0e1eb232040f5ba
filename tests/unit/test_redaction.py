"""Secrets never leave for the model; what was cut is remembered."""

from __future__ import annotations

import pytest

from writeback.domain.redaction import Redactor

CASES = [
    ("password", "The admin password is Hunter2!x", "Hunter2!x"),
    ("password", "pw: s3cr3tPass", "s3cr3tPass"),
    ("password", 'password="Winter2026"', "Winter2026"),
    ("api_key", "api_key=AbCdEf0123456789xyz", "AbCdEf0123456789xyz"),
    ("api_key", "our token: 9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706"),
    ("api_key", "sk-live-0123456789abcdefABCDEF", "sk-live-0123456789abcdefABCDEF"),
    ("api_key", "AKIAIOSFODNN7EXAMPLE was in the script", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"),
    (
        "bearer",
        "Authorization: Bearer eyJhbGciOi.abc123def456.ghi789",
        "eyJhbGciOi.abc123def456.ghi789",
    ),
    ("connection_string", "postgres://app:Pa55w0rd@db.internal:5432/crm", "Pa55w0rd"),
    ("connection_string", "Server=sql01;Database=crm;User Id=sa;Password=Tr0ub4dor;", "Tr0ub4dor"),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----",
        "MIIEow",
    ),
]


@pytest.mark.parametrize(("kind", "text", "secret"), CASES)
def test_secrets_are_replaced_and_remembered(kind: str, text: str, secret: str) -> None:
    redacted = Redactor().redact(text)
    assert secret not in redacted.text
    assert f"[REDACTED:{kind}]" in redacted.text
    assert any(secret in found for found in redacted.secrets)


def test_ordinary_support_text_is_left_alone() -> None:
    text = "User reset their password yesterday; the printer token queue is stuck on floor 3."
    assert Redactor().redact(text).text == text


def test_operators_can_add_patterns() -> None:
    redactor = Redactor([r"\bACME-\d{6}\b"])
    redacted = redactor.redact("licence ACME-123456 expired")
    assert redacted.text == "licence [REDACTED:custom] expired"
    assert redacted.secrets == {"ACME-123456"}
