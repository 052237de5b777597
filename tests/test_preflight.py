"""The CPU's load before timing: measured, said at once, the thread count fitted, waited out on request."""

from __future__ import annotations

from benchmarks.noise import consistency_flag
from benchmarks.preflight import CpuLoad, measure_load, plan_threads, thread_flags, wait_for_idle

IDLE = CpuLoad(cores=2, busy=0.05)
HALF_BUSY = CpuLoad(cores=2, busy=1.0)


def test_idle_machine_keeps_the_request_and_says_nothing():
    plan = plan_threads(IDLE, None)
    assert (plan.threads, plan.warnings, plan.flags) == (None, [], [])
    assert plan_threads(IDLE, 2).threads == 2


def test_busy_machine_without_threads_runs_on_the_free_cores():
    plan = plan_threads(HALF_BUSY, None)
    assert plan.threads == 1
    (warning,) = plan.warnings
    assert "busy before timing" in warning and "1.0 of the 2 CPU(s)" in warning and "(50%)" in warning
    assert "--threads 1" in warning and "--wait-idle" in warning
    assert plan.flags == ["cpu-load-before: " + HALF_BUSY.describe() + " before timing"]


def test_busy_machine_with_too_many_threads_suggests_fewer():
    plan = plan_threads(HALF_BUSY, 2)
    assert plan.threads == 2  # what was asked is kept, and said to be too many
    (warning,) = plan.warnings
    assert "--threads 2 is more than the 1 free core(s)" in warning and "try --threads 1" in warning


def test_oversubscription_is_flagged_by_name():
    assert thread_flags(2, HALF_BUSY) == ["oversubscribed: 2 threads on 1 free core(s) of 2"]
    assert thread_flags(4, IDLE) == ["oversubscribed: 4 threads on 2 free core(s) of 2"]
    assert thread_flags(1, HALF_BUSY) == [] and thread_flags(None, HALF_BUSY) == []


def test_fully_busy_machine_still_leaves_one_thread():
    assert CpuLoad(cores=1, busy=1.0).free == 1
    assert plan_threads(CpuLoad(cores=1, busy=1.0), None).threads == 1


def test_wait_for_idle_samples_until_quiet():
    samples = iter([HALF_BUSY, HALF_BUSY, IDLE])
    said: list[str] = []
    load = wait_for_idle(60, said.append, measure=lambda: next(samples))
    assert load == IDLE
    assert len(said) == 2 and "waiting up to 60 s" in said[0] and "1.0 of the 2" in said[0]
    assert said[1].startswith("idle after")


def test_a_machine_busy_past_the_wait_says_so():
    said: list[str] = []
    assert wait_for_idle(0.01, said.append, measure=lambda: HALF_BUSY) == HALF_BUSY
    assert said[-1].startswith("still busy after")


def test_no_wait_measures_once():
    calls: list[int] = []

    def measure() -> CpuLoad:
        calls.append(1)
        return HALF_BUSY

    assert wait_for_idle(0, print, measure=measure) == HALF_BUSY and len(calls) == 1


def test_e2e_below_model_latency_is_inconsistent():
    flag = consistency_flag(model_p50=2597.0, e2e_p50=2580.0)
    assert flag is not None and flag.startswith("inconsistent: e2e p50 2580.00 ms is below")
    assert consistency_flag(model_p50=26.6, e2e_p50=31.0) is None


def test_measure_load_sees_a_busy_process_on_our_cpu(busy_cpu):
    measure_load(0.2)  # the child starts spinning
    load = measure_load(0.5)
    assert load.cores == 1 and load.busy > 0.5 and load.is_busy
