from __future__ import annotations

import json
import logging
import sys

from writeback.adapters.logs import JsonFormatter, TextFormatter
from writeback.domain import logcontext


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("writeback.test", logging.INFO, __file__, 1, message, None, None)


def test_json_lines_carry_the_job_fields_bound_around_them() -> None:
    with logcontext.bound(job_id="j-1", step="post_note"):
        logcontext.add(session_id=7, account_id=3)
        line = json.loads(JsonFormatter().format(_record("posted")))
    assert line["message"] == "posted" and line["level"] == "INFO"
    assert (line["job_id"], line["step"], line["session_id"], line["account_id"]) == (
        "j-1",
        "post_note",
        7,
        3,
    )
    assert "job_id" not in json.loads(JsonFormatter().format(_record("after")))


def test_text_lines_append_the_job_fields() -> None:
    with logcontext.bound(job_id="j-2"):
        assert TextFormatter().format(_record("hello")).endswith("hello  [job_id=j-2]")


def test_json_lines_keep_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exc"]
