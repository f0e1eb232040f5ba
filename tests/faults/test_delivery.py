"""Messages and requests that arrive more than once: a step message delivered twice (the broker
redelivers, an operator replays it) and a frontend posting the same resolve over and over while
its job runs and finalizes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from celery import Celery

from tests.faults.conftest import (
    Deployment,
    assert_all_succeeded,
    assert_one_note_each,
)
from tests.faults.outcomes import jobs_off, notes_off
from tests.support import wait_until

pytestmark = pytest.mark.faults

STEPS = ("draft", "post_note", "transition_status", "verify", "finalize")


def _publish(d: Deployment, task: str, job_id: str) -> str:
    """A step message as our producer sends it: the task by name, the job id its only argument.
    Its task id."""
    producer = Celery("faults-producer", broker=d.stack.env["CELERY_BROKER_URL"])
    try:
        return str(producer.send_task(task, args=[job_id], queue=d.stack.env["WRITEBACK_QUEUE"]).id)
    finally:
        producer.close()


def _handled(d: Deployment, task_ids: list[str]) -> None:
    """Until the worker ran each task to an outcome: Celery's tracer logs one line per run."""

    def done() -> bool:
        traced = [line for line in d.stack.worker.log.splitlines() if "celery.app.trace" in line]
        return all(any(f"[{task_id}]" in line for line in traced) for task_id in task_ids)

    wait_until(done, timeout=30)


def test_the_same_step_message_delivered_twice_posts_one_note(deployment: Deployment) -> None:
    d = deployment
    ticket, session = d.ticket_session()
    d.sim.fault("slow", ticket, method="POST", delay=2.0)  # holds the job in post_note
    job_id = d.client.start(session)["job_id"]
    wait_until(lambda: d.client.get(f"/jobs/{job_id}")["step"] == "post_note", timeout=30)
    _publish(d, "writeback.post_note", job_id)  # while the first delivery is mid-POST

    assert_all_succeeded([d.wait_job(job_id)])
    # and every step once more after the job finished
    _handled(d, [_publish(d, f"writeback.{step}", job_id) for step in STEPS])
    job = d.client.get(f"/jobs/{job_id}")
    assert job["state"] == "succeeded", f"a replayed step message turned the job into {job}"
    assert_one_note_each(d.sim, [ticket])


def _hammer(url: str, headers: dict[str, str], stop: threading.Event, into: list[Any]) -> None:
    http = requests.Session()
    http.headers.update(headers)
    while not stop.is_set():
        response = http.post(url, json={"markdown": "## Fix\nDone."}, timeout=30)
        try:
            into.append((response.status_code, response.json()))
        except ValueError:  # not JSON: kept as text, and counted as a wrong answer
            into.append((response.status_code, {"text": response.text[:200]}))


def _wrong_answers(answers: list[tuple[int, Any]], jobs: list[str]) -> list[tuple[int, Any]]:
    """Every answer other than 409 job_in_flight naming an accepted job, or 409
    already_resolved."""

    def right(status: int, body: Any) -> bool:
        in_flight = body.get("code") == "job_in_flight" and body.get("job_id") in jobs
        return status == 409 and (in_flight or body.get("code") == "already_resolved")

    return [(status, body) for status, body in answers if not right(status, body)]


@pytest.mark.parametrize("round_", range(3))
def test_a_double_submit_hammered_across_finalize_makes_one_job_and_one_note(
    deployment: Deployment, round_: int
) -> None:
    d = deployment
    ticket, session = d.ticket_session()
    url = f"{d.stack.url}/api/v1/ai-sessions/{session}/resolution-note/post"
    stop, answers = threading.Event(), []
    threads = [
        threading.Thread(target=_hammer, args=(url, d.client.token_header, stop, answers))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: any(status == 202 for status, _ in answers), timeout=30)
        wait_until(
            lambda: d.client.get(f"/ai-sessions/{session}")["status"] == "resolved", timeout=60
        )
        # keep posting past the finalize, until as many posts as threads were told so
        wait_until(
            lambda: sum(b.get("code") == "already_resolved" for _, b in list(answers)) >= 6,
            timeout=30,
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    accepted = [body["job_id"] for status, body in answers if status == 202]
    problems = []
    if len(accepted) != 1:
        problems.append(f"{len(accepted)} of {len(answers)} posts were accepted (202): {accepted}")
    wrong = _wrong_answers([a for a in answers if a[0] != 202], accepted)
    if wrong:
        problems.append(
            f"{len(wrong)} answers neither job_in_flight naming the accepted job nor "
            f"already_resolved, e.g. {wrong[0]}"
        )
    problems += jobs_off(d.settled(accepted, timeout=60)) + notes_off(d.sim, [ticket])
    assert not problems, f"session {session}: " + "; ".join(problems) + "\n" + d.trouble()
