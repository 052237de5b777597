"""Noise flags: conditions that make a latency figure less trustworthy, recorded in Result.flags.

- other processes used a noticeable share of the CPU while we measured (a busy or shared machine);
- the CPU or GPU throttled, or a thermal zone sat at its throttling trip point;
- the samples spread widely (a high coefficient of variation);
- the end-to-end median is below the model-only one, which contains it (the load changed mid-run).

What the CPUs looked like before timing is `benchmarks.preflight`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.device import read_probe, run_probe
from benchmarks.latency import coefficient_of_variation

MAX_CV = 0.10  # samples spread more than this (std / mean) are flagged
MAX_OTHER_LOAD = 0.10  # share of all CPUs' time used by other processes during the run


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy: float  # non-idle CPU seconds of the whole machine, steal included
    own: float  # CPU seconds of this process and its waited-for children
    throttles: int  # Intel's core + package thermal throttle events so far


def _throttle_count() -> int:
    total = 0
    for counter in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/thermal_throttle/*_throttle_count"):
        value = read_probe(counter)
        total += int(value) if value and value.isdigit() else 0
    return total


def cpu_snapshot() -> CpuSnapshot:
    times = psutil.cpu_times()
    # Busy fields only: Linux counts guest time inside user, so summing every field would count it twice.
    busy = sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
    own = psutil.Process().cpu_times()
    return CpuSnapshot(
        wall=time.perf_counter(),
        busy=busy,
        own=own.user + own.system + own.children_user + own.children_system,
        throttles=_throttle_count(),
    )


def other_load(start: CpuSnapshot, end: CpuSnapshot, cpus: int | None = None) -> float:
    """Share (0..1) of the machine's CPU time that other processes used between two snapshots."""
    capacity = (end.wall - start.wall) * (cpus or psutil.cpu_count() or 1)
    if capacity <= 0:
        return 0.0
    return max(0.0, ((end.busy - start.busy) - (end.own - start.own)) / capacity)


class LoadMonitor:
    """Wrap a measurement: `with LoadMonitor() as load: ...`, then `load.flags()`."""

    def __enter__(self) -> LoadMonitor:
        self.start = cpu_snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = cpu_snapshot()

    @property
    def other_load(self) -> float:
        return other_load(self.start, self.end)

    def flags(self, max_other_load: float = MAX_OTHER_LOAD) -> list[str]:
        flags = []
        if self.other_load > max_other_load:
            flags.append(
                f"cpu-load: other processes used {self.other_load:.0%} of the CPUs during the run "
                f"(limit {max_other_load:.0%})"
            )
        if self.end.throttles > self.start.throttles:
            flags.append(
                f"throttled: {self.end.throttles - self.start.throttles} CPU thermal throttle events"
            )
        return flags + thermal_flags()


def thermal_flags() -> list[str]:
    """Zones at or above their first passive trip point (where the kernel throttles), and GPU slowdowns."""
    flags = []
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        temp = read_probe(zone / "temp")
        trips = [
            read_probe(zone / f"trip_point_{t.name.split('_')[2]}_temp")
            for t in zone.glob("trip_point_*_type")
            if read_probe(t) == "passive"
        ]
        limits = [int(v) for v in trips if v and v.lstrip("-").isdigit() and int(v) > 0]
        if temp and temp.lstrip("-").isdigit() and limits and int(temp) >= min(limits):
            name = read_probe(zone / "type") or zone.name
            flags.append(
                f"thermal: {name} at {int(temp) / 1000:.0f} C, throttling from {min(limits) / 1000:.0f} C"
            )
    reasons = run_probe(
        "nvidia-smi",
        "--query-gpu=clocks_throttle_reasons.hw_slowdown,clocks_throttle_reasons.sw_thermal_slowdown",
        "--format=csv,noheader",
    )
    if reasons and "Active" in reasons:
        flags.append(f"throttled: GPU clocks slowed down ({reasons})")
    return flags


def spread_flag(label: str, samples_ms: list[float], max_cv: float = MAX_CV) -> str | None:
    cv = coefficient_of_variation(samples_ms)
    if cv > max_cv:
        return f"high-cv: {label} latency varies by {cv:.0%} (std / mean, limit {max_cv:.0%})"
    return None


def consistency_flag(model_p50: float, e2e_p50: float) -> str | None:
    """End to end includes the model run, so an e2e median below the model's means the load changed."""
    if e2e_p50 < model_p50:
        return (
            f"inconsistent: e2e p50 {e2e_p50:.2f} ms is below the model-only p50 {model_p50:.2f} ms "
            "(the machine's load changed during the run)"
        )
    return None
