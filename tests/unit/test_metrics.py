from __future__ import annotations

import pytest

from writeback.adapters.metrics import (
    MULTIPROC_ENV,
    MetricsConfigError,
    WorkerMetrics,
    check_worker_metrics,
)


def test_a_prefork_worker_serving_metrics_needs_the_multiprocess_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(MetricsConfigError, match=MULTIPROC_ENV):
        check_worker_metrics("prefork", 9808)
    check_worker_metrics("threads", 9808)  # one process counts everything itself
    check_worker_metrics("prefork", None)  # no metrics served, nothing wrong shown
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    check_worker_metrics("prefork", 9808)


def test_psa_answers_count_by_vendor_method_and_status() -> None:
    metrics = WorkerMetrics()
    metrics.observe_psa_answer("autotask", "post", 201)
    metrics.observe_psa_answer("halopsa", "GET", None)
    value = metrics.registry.get_sample_value
    labels = {"vendor": "autotask", "method": "POST", "status": "201"}
    assert value("writeback_psa_answers_total", labels) == 1
    labels = {"vendor": "halopsa", "method": "GET", "status": "none"}
    assert value("writeback_psa_answers_total", labels) == 1
