"""Latency statistics, the timed loop's minimum count and duration, and the noise flags."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmarks.latency import TimingPlan, coefficient_of_variation, latency_stats, time_calls
from benchmarks.noise import MAX_CV, CpuSnapshot, LoadMonitor, other_load, spread_flag


def test_stats_match_numpy_percentiles():
    samples = np.random.default_rng(1).lognormal(2.0, 0.3, 1001).tolist()
    stats = latency_stats(samples)
    assert stats.n == 1001
    for q, value in zip((50, 90, 95, 99), (stats.p50, stats.p90, stats.p95, stats.p99), strict=True):
        assert value == pytest.approx(np.percentile(samples, q), rel=1e-12)
    assert stats.mean == pytest.approx(np.mean(samples))
    assert stats.std == pytest.approx(np.std(samples))
    assert (stats.min, stats.max) == (min(samples), max(samples))


def test_stats_on_small_known_set():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (stats.p50, stats.p90, stats.mean) == (3.0, 4.6, 3.0)
    with pytest.raises(ValueError):
        latency_stats([])


def test_loop_runs_warmup_then_at_least_iters():
    calls = []
    samples = time_calls(lambda: calls.append(1), TimingPlan(warmup=3, iters=25, min_seconds=0))
    assert len(samples) == 25
    assert len(calls) == 28  # warm-up runs are made but not timed
    assert all(s >= 0 for s in samples)


def test_loop_runs_at_least_min_seconds():
    started = time.perf_counter()
    samples = time_calls(lambda: time.sleep(0.001), TimingPlan(warmup=0, iters=5, min_seconds=0.3))
    assert time.perf_counter() - started >= 0.3
    assert len(samples) > 5
    assert sum(samples) >= 300 * 0.9  # nearly all of that time is inside the timed calls


def test_high_spread_flagged_steady_not():
    rng = np.random.default_rng(0)
    steady = (10 + rng.normal(0, 0.2, 500)).tolist()
    noisy = (10 * rng.lognormal(0, 0.5, 500)).tolist()
    assert coefficient_of_variation(steady) < MAX_CV < coefficient_of_variation(noisy)
    assert spread_flag("model", steady) is None
    flag = spread_flag("model", noisy)
    assert flag is not None and flag.startswith("high-cv")


def test_other_processes_load():
    start = CpuSnapshot(wall=0.0, busy=100.0, own=10.0, throttles=0)
    # 2 CPUs for 1 s = 2 CPU-seconds; we used 0.9 of them and the machine was busy for 1.9 in all.
    end = CpuSnapshot(wall=1.0, busy=101.9, own=10.9, throttles=0)
    assert other_load(start, end, cpus=2) == pytest.approx(0.5)
    quiet = CpuSnapshot(wall=1.0, busy=100.95, own=10.9, throttles=0)
    assert other_load(start, quiet, cpus=2) == pytest.approx(0.025)


def test_load_monitor_flags_busy_machine_and_throttling():
    monitor = LoadMonitor()
    monitor.start = CpuSnapshot(wall=0.0, busy=0.0, own=0.0, throttles=3)
    monitor.end = CpuSnapshot(wall=1.0, busy=2.0, own=0.1, throttles=5)
    flags = monitor.flags()
    assert any(f.startswith("cpu-load") for f in flags)
    assert any(f.startswith("throttled: 2") for f in flags)
    monitor.end = CpuSnapshot(wall=1.0, busy=0.1, own=0.1, throttles=3)
    assert not [f for f in monitor.flags() if f.startswith(("cpu-load", "throttled: 2"))]


def test_load_monitor_measures_this_machine():
    with LoadMonitor() as monitor:
        sum(i * i for i in range(200_000))
    assert 0.0 <= monitor.other_load <= 1.0
    assert monitor.end.own >= monitor.start.own


def test_end_to_end_keeps_what_the_deployment_thresholds_keep():
    """Two boxes of one anchor grid: conf 0.9 (class 0, also 0.3 on class 1) and 0.1 (class 1)."""
    from benchmarks.accuracy import EVALUATION, NmsThresholds
    from benchmarks.latency import encode_images, end_to_end

    raw = np.zeros((1, 6, 4), np.float32)
    raw[0, :4, 0], raw[0, 4:, 0] = (20, 20, 10, 10), (0.9, 0.3)
    raw[0, :4, 1], raw[0, 4:, 1] = (44, 44, 10, 10), (0.0, 0.1)

    class Fixed:
        def infer(self, batch):
            return raw

    encoded = encode_images([np.zeros((64, 64, 3), np.uint8)])
    deployed = end_to_end(Fixed(), encoded, 64)[0]
    assert deployed[:, 4:].tolist() == [[pytest.approx(0.9), 0.0]]
    evaluated = end_to_end(Fixed(), encoded, 64, EVALUATION)[0]
    assert sorted(evaluated[:, 4].tolist()) == pytest.approx([0.1, 0.3, 0.9])  # multi-label, conf 0.001
    assert len(end_to_end(Fixed(), encoded, 64, NmsThresholds(conf=0.05, max_det=1))[0]) == 1
