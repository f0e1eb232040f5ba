"""The operator's manual keeps up with the code: every code a job can end with is explained, and
the dashboard queries only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "writeback"
# Codes of API answers only: a job never ends with them.
API_ONLY = {
    "error",
    "not_found",
    "unauthorized",
    "invalid_input",
    "conflict",
    "job_in_flight",
    "psa_error",
}
# Waits: a job held on them runs again, it never ends with them.
WAITS = {"wait", "budget_wait", "part_unavailable", "store_unavailable", "lease_lost"}


def job_codes() -> set[str]:
    errors = (SRC / "domain" / "errors.py").read_text()
    codes = set(re.findall(r'^\s+code = "(\w+)"', errors, re.MULTILINE)) - API_ONLY - WAITS
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        # Codes given where an error is raised: DraftRejected(..., "code"), StatusTargetError(...)
        raised = r'(?:DraftRejected|StatusTargetError)\(.{0,300}?"([a-z_]+)",?\s*\)'
        codes |= set(re.findall(raised, text, re.DOTALL))
    # Set by the sweeper, the pipeline and the upgrade (a second close in older data).
    codes |= {"delivery_lost", "internal_error", "duplicate_close"}
    return codes


def test_every_job_error_code_has_a_troubleshooting_entry() -> None:
    headings = re.findall(r"^##+ .*$", (ROOT / "docs" / "troubleshooting.md").read_text(), re.M)
    explained = {code for line in headings for code in re.findall(r"`(\w+)`", line)}
    codes = job_codes()
    assert {"draft_invalid", "status_not_found", "llm_request_rejected"} <= codes
    assert codes <= explained, sorted(codes - explained)


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "psa-writeback.json").read_text())
    exported = set(re.findall(r'"(writeback_\w+)"', (SRC / "adapters" / "metrics.py").read_text()))
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    used = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"\bwriteback_\w+", expr)
    }
    assert exprs and used <= exported, sorted(used - exported)
    # Counters are exported with a _total suffix, which the source names carry too.
    assert {"writeback_jobs", "writeback_psa_answers_total"} <= used
