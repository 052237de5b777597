"""`edgepipe fleet join`'s work: the `ray start` that makes this device a worker node of the fleet."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import InputError


def ray_start_command(
    address: str, resources: dict[str, float], num_cpus: int | None, node_ip: str | None, block: bool
) -> list[str]:
    beside_python = Path(sys.executable).with_name("ray")
    ray = str(beside_python) if beside_python.is_file() else shutil.which("ray") or "ray"
    command = [
        ray,
        "start",
        "--address",
        address,
        "--resources",
        json.dumps(resources),
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    if node_ip:
        command += ["--node-ip-address", node_ip]
    return command + (["--block"] if block else [])


def start_ray(command: list[str], address: str) -> None:
    """Run `ray start`; its failure is an InputError naming the likely causes."""
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise InputError(
            f"`ray start` failed with exit code {done.returncode}",
            hint=f"is the head at {address} reachable, and is its Ray version the same as this one's?",
        )
