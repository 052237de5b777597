"""The package layers of docs/architecture.md: each package imports on its own, the CLI stays light.

The import contract itself (no layer imports one above it) is `lint-imports`, run by `make lint` in CI.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "benchmarks", "targets", "pipeline", "pipeline.cli")
# Heavy or optional libraries: imported inside the functions that need them, never by `edgepipe --help`.
HEAVY = ("torch", "ultralytics", "torch_pruning", "onnx", "onnxruntime", "openvino", "nncf", "matplotlib")
# What a function may import (docs/architecture.md): the heavy or optional libraries, and edgepipe's own
# modules that import torch at their top. Everything else is imported at the top of the module.
DEFERRED = (*HEAVY, "onnxslim", "modelopt", "tensorrt", "pycuda", "cuda", "ray", "scipy", "faster_coco_eval")
DEFERRED_OWN = ("pipeline.pruning", "pipeline.modules")


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


def function_level_imports():
    for top in ("core", "benchmarks", "targets", "pipeline"):
        for path in sorted((REPO / top).rglob("*.py")):
            for function in ast.walk(ast.parse(path.read_text())):
                if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for node in ast.walk(function):
                        if isinstance(node, ast.Import):
                            yield from ((path, node.lineno, alias.name) for alias in node.names)
                        elif isinstance(node, ast.ImportFrom) and node.module:
                            yield path, node.lineno, node.module


def test_functions_import_only_heavy_or_optional_libraries():
    light = [
        f"{path.relative_to(REPO)}:{line} {module}"
        for path, line, module in function_level_imports()
        if module.split(".")[0] not in DEFERRED and not module.startswith(DEFERRED_OWN)
    ]
    assert not light, light


def test_the_own_modules_imported_late_import_torch():
    done = fresh_import(", ".join(DEFERRED_OWN), "print('torch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
