"""The CPU's load before timing starts: said at once, and the thread count fitted to the free cores.

A latency timed while another job holds the cores measures that job: threads that wait for a busy core
turn a 27 ms model into seconds. So before the timed loops, the CPUs this process may run on (its
affinity) are sampled for a moment; when other processes keep them busy, `bench` says so before it
starts (optionally after waiting for a quiet machine), runs with the free cores' worth of threads when
none were asked for, and records what it saw in the results' flags.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from benchmarks.noise import MAX_OTHER_LOAD

SAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class CpuLoad:
    """What other processes used of this process's CPUs over a short sample."""

    cores: int  # CPUs this process may run on
    busy: float  # cores' worth of CPU time other processes used on them (0..cores)

    @property
    def share(self) -> float:
        return self.busy / self.cores if self.cores else 0.0

    @property
    def is_busy(self) -> bool:
        return self.share > MAX_OTHER_LOAD

    @property
    def free(self) -> int:
        """Whole cores left; at least 1, since the benchmark needs one anyway."""
        return max(1, self.cores - round(self.busy))

    def describe(self) -> str:
        return (
            f"other processes use {self.busy:.1f} of the {self.cores} CPU(s) this benchmark may run on "
            f"({self.share:.0%})"
        )


def measure_load(seconds: float = SAMPLE_SECONDS) -> CpuLoad:
    """Other processes' use of this process's CPUs over `seconds` (this process stays idle meanwhile)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    per_cpu = psutil.cpu_percent(interval=seconds, percpu=True)
    mine = [per_cpu[c] for c in cpus if c < len(per_cpu)] if cpus else per_cpu
    return CpuLoad(cores=len(mine), busy=sum(mine) / 100)


def wait_for_idle(
    limit_s: float, say: Callable[[str], None], measure: Callable[[], CpuLoad] = measure_load
) -> CpuLoad:
    """Sample until the CPUs are quiet or `limit_s` seconds have passed; returns the last sample."""
    load = measure()
    started = time.monotonic()
    if load.is_busy and limit_s > 0:
        say(f"machine busy: {load.describe()}; waiting up to {limit_s:g} s for it to be idle (--wait-idle)")
        while load.is_busy and time.monotonic() - started < limit_s:
            load = measure()
        waited = time.monotonic() - started
        say(f"idle after {waited:.0f} s" if not load.is_busy else f"still busy after {waited:.0f} s")
    return load


@dataclass(frozen=True)
class ThreadPlan:
    threads: int | None  # what to run with (None: the backend's choice)
    warnings: list[str]  # said before timing
    flags: list[str]  # recorded in every result


def plan_threads(load: CpuLoad, requested: int | None) -> ThreadPlan:
    """The thread count for `load`: the request, or on a busy machine without one, the free cores."""
    if not load.is_busy:
        return ThreadPlan(requested, [], [])
    flag = f"cpu-load-before: {load.describe()} before timing"
    seen = f"the machine is busy before timing: {load.describe()}"
    if requested is None:
        chosen = load.free
        advice = f"running with --threads {chosen} (the free cores); pass --threads N to choose"
        return ThreadPlan(chosen, [f"{seen}; {advice}, or --wait-idle S to wait for a quiet machine"], [flag])
    if requested > load.free:
        return ThreadPlan(
            requested,
            [f"{seen}; --threads {requested} is more than the {load.free} free core(s): try "
             f"--threads {load.free}, or --wait-idle S to wait for a quiet machine"],
            [flag],
        )  # fmt: skip
    return ThreadPlan(requested, [f"{seen}; timing with --threads {requested} anyway"], [flag])


def oversubscribed_flag(threads: int, load: CpuLoad) -> str:
    return f"oversubscribed: {threads} threads on {load.free} free core(s) of {load.cores}"


def thread_flags(threads_used: int | None, load: CpuLoad) -> list[str]:
    """The oversubscription flag for what the backend ran with (its own default included), else the plan's."""
    if threads_used is not None and threads_used > load.free:
        return [oversubscribed_flag(threads_used, load)]
    return []
