"""lossviz.widget.follow: a followed job's result is applied once when it ends; failures and cancellations
are said in words; a later job in the same slot supersedes an earlier one."""

from __future__ import annotations

import threading
import time

import pytest

from lossviz.jobs import Job, JobQueue
from lossviz.widget.follow import JobFollower


@pytest.fixture
def queue():
    q = JobQueue("test-follow")
    yield q
    q.shutdown(wait=True, timeout=10)


def follower(blocking=True):
    said = {"error": [], "message": [], "jobs": []}
    f = JobFollower(said["error"].append, said["message"].append, said["jobs"].append, lambda: blocking)
    return f, said


def job(queue, fn, kind="quick"):
    return queue.submit(Job(kind, lambda j: fn()))


def test_the_result_is_applied_once_and_the_job_listed_at_start_and_end(queue):
    f, said = follower()
    got = []
    f.follow("adding", lambda: job(queue, lambda: 1 + 1), got.append)
    assert got == [2] and said["error"] == [] and len(said["jobs"]) == 2 and said["jobs"][-1].state == "done"
    assert f.follows(said["jobs"][0].id) and f.pending() == [] and f.wait(1)


def test_failures_of_the_start_and_of_the_job_are_said_in_words(queue):
    f, said = follower()

    def boom():
        raise ValueError("no checkpoint 9")

    f.follow("disturbing checkpoint 9", boom, print)
    f.follow("disturbing checkpoint 9", lambda: job(queue, boom), print)
    assert said["error"] == ["disturbing checkpoint 9 failed: no checkpoint 9",
                             "disturbing checkpoint 9 failed: ValueError: no checkpoint 9"]
    f.follow("quietly", lambda: job(queue, boom), print, quiet=True)
    assert len(said["error"]) == 2


def test_a_later_job_in_the_same_slot_supersedes_an_earlier_one(queue):
    f, _ = follower(blocking=False)
    gate, got = threading.Event(), []
    f.follow("first", lambda: job(queue, lambda: gate.wait(10) and "first"), got.append, slot="p")
    slow = JobQueue("test-follow-2")
    try:
        f.follow("second", lambda: job(slow, lambda: "second"), got.append, slot="p")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:  # the second ends while the first waits on its gate
            time.sleep(0.01)
        assert got == ["second"]
        gate.set()
        assert f.wait(10) and got == ["second"]  # the first one's result is not applied
    finally:
        slow.shutdown(wait=True, timeout=10)


def test_a_superseded_job_that_has_not_started_is_cancelled_quietly(queue):
    f, said = follower(blocking=False)
    gate, got = threading.Event(), []
    f.follow("blocker", lambda: job(queue, lambda: gate.wait(10)), got.append)
    f.follow("projection 1", lambda: job(queue, lambda: 1), got.append, slot="p")
    first = said["jobs"][-1]
    f.follow("projection 2", lambda: job(queue, lambda: 2), got.append, slot="p")
    assert first.cancelled
    gate.set()
    assert f.wait(10)
    # each result is applied on its job's waiter thread: the blocker's and the second's, in either order
    assert sorted(map(repr, got)) == ["2", "True"] and first.state == "cancelled"
    assert said["message"] == [] and said["error"] == []


def test_a_cancelled_job_is_said_and_applies_nothing(queue):
    f, said = follower(blocking=False)
    gate, got = threading.Event(), []
    f.follow("blocker", lambda: job(queue, lambda: gate.wait(10)), got.append)
    f.follow("waiting", lambda: job(queue, lambda: "never"), got.append)
    queued = said["jobs"][-1]
    queued.cancel()
    gate.set()
    assert f.wait(10)
    assert got == [True] and said["message"] == ["waiting: cancelled"] and queued.state == "cancelled"


def test_forget_releases_waiters_and_applies_nothing_more(queue):
    f, _ = follower(blocking=False)
    gate, got = threading.Event(), []
    f.follow("slow", lambda: job(queue, lambda: gate.wait(10)), got.append)
    assert f.wait(0.05) is False and f.pending()[0].startswith("slow (job ")
    f.forget()
    assert f.wait(0.05) and f.pending() == []
    gate.set()
    queue.shutdown(wait=True, timeout=10)
    assert got == []


def test_a_view_refresh_is_transient_and_others_are_not(queue):
    f, said = follower()
    f.follow("the pca projection", lambda: job(queue, lambda: 1), print, slot="projection", transient=True)
    f.follow("disturbing checkpoint 3", lambda: job(queue, lambda: 2), print)
    refresh, disturb = said["jobs"][0], said["jobs"][2]
    assert refresh.state == disturb.state == "done"
    assert f.transient(refresh.id) and not f.transient(disturb.id)
