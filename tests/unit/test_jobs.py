"""lossviz.jobs: a job's states, progress, cancel, wait and failure; the queue's order and events."""

from __future__ import annotations

import threading
import time

import pytest

from lossviz.jobs import JOB_STATES, Job, JobCancelled, JobQueue


def _recorder():
    seen: list[tuple[str, int, int, str]] = []
    return seen, lambda j: seen.append((j.state, j.done, j.total, j.message))


@pytest.fixture
def queue():
    q = JobQueue("test-jobs")
    yield q
    q.shutdown(wait=True, timeout=10)


def test_a_job_runs_to_done_with_its_result_and_timestamps(queue):
    seen, on_change = _recorder()
    job = Job("sum", lambda j: sum(range(5)), description="add", on_change=on_change)
    assert job.state == "queued" and job.progress == 0.0 and not job.is_finished()
    assert queue.submit(job) is job
    assert job.wait(10) == 10 and job.result == 10
    assert job.state == "done" and job.finished_ok and job.is_finished() and job.error is None
    assert job.progress == 1.0  # done is complete whatever the counts said
    assert job.created <= job.started <= job.finished
    assert [s for s, *_ in seen] == ["queued", "running", "done"]  # submit, start, end
    assert {s for s, *_ in seen} <= set(JOB_STATES)
    d = job.to_dict()
    assert d["state"] == "done" and d["kind"] == "sum" and d["description"] == "add" and d["progress"] == 1.0


def test_ids_are_unique_and_increasing():
    a, b = Job("a", lambda j: None), Job("b", lambda j: None)
    assert b.id > a.id


def test_progress_is_done_over_total_and_changes_are_throttled_unless_forced():
    seen, on_change = _recorder()
    job = Job("p", lambda j: None, on_change=on_change)
    assert job.progress == 0.0  # no total yet
    job.update(1, 4, "one")
    assert job.progress == 0.25 and job.message == "one" and len(seen) == 1
    job.update(2, 4, "two")  # within 0.1 s of the last event: recorded, not announced
    assert job.progress == 0.5 and job.message == "two" and len(seen) == 1
    job.update(3, 4, "three", force=True)
    assert seen[-1] == ("queued", 3, 4, "three")
    job.update(4)  # the last step is always announced
    assert seen[-1][1:3] == (4, 4) and len(seen) == 3
    job.update(9)  # more done than the total: progress stays at 1
    assert job.progress == 1.0


def test_an_exception_fails_the_job_with_the_reason_and_the_worker_lives_on(queue):
    def boom(j):
        raise ValueError("the loss fell over")

    bad = queue.submit(Job("bad", boom))
    good = queue.submit(Job("good", lambda j: "fine"))
    assert bad.wait(10) is None and bad.state == "failed"
    assert bad.error == "ValueError: the loss fell over" and "Traceback" in bad.traceback
    assert good.wait(10) == "fine" and good.state == "done"


def test_fail_and_end_cancelled_from_inside_keep_the_partial_result(queue):
    def diverges(j):
        j.fail("loss is nan at step 3", result=[1, 2])
        return [1, 2, 3]  # ignored: the job already ended

    def stops(j):
        j.end_cancelled(["half"], "stopped at epoch 2")

    a, b = queue.submit(Job("a", diverges)), queue.submit(Job("b", stops))
    a.wait(10)
    b.wait(10)
    assert (a.state, a.error, a.result) == ("failed", "loss is nan at step 3", [1, 2])
    assert (b.state, b.error, b.result) == ("cancelled", "stopped at epoch 2", ["half"])


def test_cancel_a_queued_job_ends_it_before_it_runs(queue):
    gate = threading.Event()
    ran = []
    blocker = queue.submit(Job("block", lambda j: gate.wait(10)))
    later = queue.submit(Job("later", lambda j: ran.append(1)))
    later.cancel()
    assert later.state == "queued" and later.cancelled
    gate.set()
    later.wait(10)
    blocker.wait(10)
    assert later.state == "cancelled" and later.error == "cancelled before it started" and ran == []


def test_cancel_a_running_job_at_its_next_check(queue):
    started = threading.Event()
    steps = []

    def loop(j):
        started.set()
        for i in range(1000):
            if j.cancelled:
                raise JobCancelled(f"cancelled at step {i}")
            steps.append(i)
            time.sleep(0.005)
        return "finished"

    job = queue.submit(Job("loop", loop))
    assert started.wait(10)
    job.cancel()
    job.wait(10)
    assert job.state == "cancelled" and job.error.startswith("cancelled at step") and 0 < len(steps) < 1000
    assert job.cancel_event.is_set()


def test_a_job_that_returns_after_a_cancel_ends_cancelled_with_its_result(queue):
    started, go = threading.Event(), threading.Event()

    def ignores_cancel(j):
        started.set()
        go.wait(10)
        return "partial"

    job = queue.submit(Job("x", ignores_cancel))
    assert started.wait(10)
    job.cancel()
    go.set()
    assert job.wait(10) == "partial" and job.state == "cancelled"


def test_wait_times_out_with_the_state_in_words(queue):
    gate = threading.Event()
    job = queue.submit(Job("slow", lambda j: gate.wait(10)))
    with pytest.raises(TimeoutError, match=r"job \d+ \(slow\) still (queued|running) after 0.05 s"):
        job.wait(0.05)
    gate.set()
    job.wait(10)
    assert job.state == "done"


def test_the_queue_runs_jobs_one_at_a_time_in_submission_order(queue):
    order, running, overlap = [], [], []
    lock = threading.Lock()

    def work(name):
        def fn(j):
            with lock:
                running.append(name)
                overlap.append(len(running))
            time.sleep(0.01)
            order.append(name)
            with lock:
                running.remove(name)
        return fn

    jobs = [queue.submit(Job(f"j{i}", work(i))) for i in range(6)]
    for j in jobs:
        j.wait(10)
    assert order == list(range(6)) and max(overlap) == 1
    assert [j.started for j in jobs] == sorted(j.started for j in jobs)


def test_in_worker_and_current(queue):
    inside = {}

    def probe(j):
        inside["worker"] = queue.in_worker()
        inside["current"] = queue.current

    job = queue.submit(Job("probe", probe))
    job.wait(10)
    assert inside == {"worker": True, "current": job} and not queue.in_worker()


def test_shutdown_runs_the_queued_jobs_first():
    q = JobQueue("test-shutdown")
    done = []
    jobs = [q.submit(Job("s", lambda j, i=i: done.append(i))) for i in range(3)]
    q.shutdown(wait=True, timeout=10)
    assert done == [0, 1, 2] and all(j.state == "done" for j in jobs)


def test_a_subscriber_error_does_not_end_the_job(queue):
    def bad_subscriber(j):
        raise RuntimeError("subscriber bug")

    job = queue.submit(Job("ok", lambda j: j.update(1, 1, "one", force=True) or 7, on_change=bad_subscriber))
    assert job.wait(10) == 7 and job.state == "done"
