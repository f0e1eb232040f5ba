from __future__ import annotations

import pytest

from writeback.adapters.metrics import (
    MULTIPROC_ENV,
    MetricsConfigError,
    WorkerMetrics,
    check_worker_metrics,
    vendor_of,
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


@pytest.mark.parametrize(
    ("url", "vendor"),
    [
        ("https://na.myconnectwise.net/v4_6_release/apis/3.0/service/tickets/1", "connectwise"),
        ("https://na.myconnectwise.net/login/companyinfo/acme", "connectwise"),
        ("https://webservices5.autotask.net/ATServicesRest/V1.0/Tickets/3", "autotask"),
        ("https://acme.halopsa.com/api/Tickets/7", "halopsa"),
        ("https://acme.halopsa.com/auth/token", "halopsa"),
        ("https://example.com/else", "other"),
    ],
)
def test_psa_answers_are_labelled_by_vendor(url: str, vendor: str) -> None:
    assert vendor_of(url) == vendor


def test_psa_answers_count_by_vendor_method_and_status() -> None:
    metrics = WorkerMetrics()
    metrics.observe_psa_answer("post", "https://h/ATServicesRest/V1.0/TicketNotes", 201)
    metrics.observe_psa_answer("GET", "https://h/api/Tickets/1", None)
    value = metrics.registry.get_sample_value
    labels = {"vendor": "autotask", "method": "POST", "status": "201"}
    assert value("writeback_psa_answers_total", labels) == 1
    labels = {"vendor": "halopsa", "method": "GET", "status": "none"}
    assert value("writeback_psa_answers_total", labels) == 1
