"""The package layers of docs/architecture.md: each package imports on its own, the CLI stays light.

The import contract itself (no layer imports one above it) is `lint-imports`, run by `make lint` in CI.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "benchmarks", "targets", "pipeline", "pipeline.cli")
# Heavy or optional libraries: imported inside the functions that need them, never by `edgepipe --help`.
HEAVY = ("torch", "ultralytics", "torch_pruning", "onnx", "onnxruntime", "openvino", "nncf", "matplotlib")


def fresh_import(module: str, code: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", f"import sys, {module}\n{code}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_on_its_own(package):
    done = fresh_import(package)
    assert done.returncode == 0, done.stderr


def test_the_cli_imports_no_heavy_library():
    done = fresh_import("pipeline.cli", f"print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_source_folder_is_a_regular_package():
    """setuptools' `find` skips a folder without __init__.py: its modules would be missing from the wheel."""
    for top in ("core", "benchmarks", "targets", "pipeline"):
        for folder in {p.parent for p in (REPO / top).rglob("*.py")}:
            assert (folder / "__init__.py").is_file(), f"{folder.relative_to(REPO)} has no __init__.py"
