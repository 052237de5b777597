"""Ray custom resources: what a node advertises (from its fingerprint) and what a matrix cell requests.

A node advertises `device:<kind>` and `target:<name>` as capabilities and exactly one `bench-slot`. A
cell requests a sliver of the first two (so any number of cells *could* fit) and the whole slot (so only
one at a time does): two benchmarks sharing a device would corrupt each other's timings.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

from core.errors import BackendUnavailable
from targets.base import get_target, target_names

DEVICE_PREFIX = "device:"
TARGET_PREFIX = "target:"
BENCH_SLOT = "bench-slot"
CAPABILITY_SHARE = 0.001  # what a cell takes of a capability resource: it only has to be present


def require_ray() -> ModuleType:
    """Import Ray, or say how to install it: the fleet commands are an optional extra."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailable(
            "the fleet commands need Ray, which is not installed",
            hint='pip install "edgepipe[fleet]"',
        ) from None
    return ray


def slugify(text: str) -> str:
    """'NVIDIA Jetson Orin Nano Developer Kit' -> 'nvidia-jetson-orin-nano-developer-kit'."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "unknown"


def device_kind(fingerprint: dict[str, Any], override: str | None = None) -> str:
    """The kind a matrix names a device by: `override` when given, else the slugified fingerprint name."""
    return slugify(override or str(fingerprint.get("name") or "unknown"))


def available_targets() -> list[str]:
    """The targets whose library works on this machine."""
    return [name for name in target_names() if get_target(name).available()[0]]


def node_resources(kind: str, targets: list[str]) -> dict[str, float]:
    """What `edgepipe fleet join` advertises."""
    return {
        f"{DEVICE_PREFIX}{kind}": 1.0,
        **{f"{TARGET_PREFIX}{target}": 1.0 for target in targets},
        BENCH_SLOT: 1.0,
    }


def cell_resources(kind: str, target: str) -> dict[str, float]:
    """What one matrix cell requests: a node of this kind that builds this target, and its only slot."""
    return {
        f"{DEVICE_PREFIX}{kind}": CAPABILITY_SHARE,
        f"{TARGET_PREFIX}{target}": CAPABILITY_SHARE,
        BENCH_SLOT: 1.0,
    }


def node_kind(resources: dict[str, float]) -> str | None:
    """The kind a node advertises (None for a node that did not join with `edgepipe fleet join`)."""
    kinds = [name.removeprefix(DEVICE_PREFIX) for name in resources if name.startswith(DEVICE_PREFIX)]
    return kinds[0] if kinds else None


def node_targets(resources: dict[str, float]) -> list[str]:
    return sorted(name.removeprefix(TARGET_PREFIX) for name in resources if name.startswith(TARGET_PREFIX))


def can_run(resources: dict[str, float], kind: str, target: str) -> bool:
    """Whether a node with these total resources could ever run a cell of (kind, target)."""
    return all(resources.get(name, 0) >= amount for name, amount in cell_resources(kind, target).items())
