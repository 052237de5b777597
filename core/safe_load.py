"""Open a `.pt` checkpoint without running code: `weights_only` unpickling against an allow-list.

A pickle can call any function it names, so a checkpoint from a pull request could run code on a CI runner
the moment it is opened. Every checkpoint edgepipe opens goes through `read_checkpoint`:

1. the globals the pickle names are listed without unpickling it (torch's checkpoint scan) and each must be
   on the allow-list: torch's layers, Ultralytics' model, loss and assigner classes, the plain data
   Ultralytics' own checkpoints hold, and edgepipe's model surgery (`pipeline.modules`), which pruned
   checkpoints pickle. The first name outside the list refuses the file (exit 2), naming it;
2. the file is unpickled with `weights_only=True`: by Ultralytics' restricted loader where it has one
   (`torch_safe_load(..., safe_only=True)`, Ultralytics 8.4), else by torch with the same list.

`trust_checkpoints()` (`--trust-checkpoint`, `trust_checkpoint: true`) opts into full unpickling, with a
warning, for files the user vouches for.
"""

from __future__ import annotations

import functools
import importlib
import logging
import pathlib
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError

log = logging.getLogger(__name__)

# Modules whose torch.nn.Module classes a checkpoint may name.
MODEL_MODULES = ("torch.nn.modules", "ultralytics.nn.modules", "ultralytics.nn.tasks", "pipeline.modules")
# Modules whose own classes a checkpoint may name (a pickled loss criterion and its assigner).
CLASS_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal", "ultralytics.nn.distill_model")
# edgepipe's modules: Ultralytics' allow-list does not know them, so they are registered with torch here.
PROJECT_MODULES = ("pipeline.modules",)

_trusted = False
_warned: set[Path] = set()  # files already named in the --trust-checkpoint warning


def trust_checkpoints() -> None:
    """From now on, unpickle checkpoints fully (they may run code): for files the user trusts."""
    global _trusted
    _trusted = True


def read_checkpoint(path: Path) -> Any:
    """The unpickled checkpoint, loaded as the trust setting says; an InputError names a refused file."""
    from ultralytics.nn import tasks

    path = Path(path)
    if _trusted:
        if path.resolve() not in _warned:
            _warned.add(path.resolve())
            log.warning("%s: loading with full unpickling (--trust-checkpoint): it can run any code", path)
        return tasks.torch_safe_load(str(path), safe_only=False)[0]
    classes = allowed_globals(path)
    import torch

    torch.serialization.add_safe_globals(
        [obj for name, obj in classes.items() if name.rpartition(".")[0] in PROJECT_MODULES]
    )
    if hasattr(tasks, "_SafeLoad"):  # Ultralytics 8.4: its restricted loader, with its legacy aliases
        return tasks.torch_safe_load(str(path), safe_only=True)[0]
    entries: list[Any] = [(obj, name) for name, obj in classes.items()]
    if "numpy.dtype" in classes:  # numpy's dtype classes are built at load time: the scan cannot list them
        entries.append(type(np.dtype(np.float64)))
    with torch.serialization.safe_globals(entries):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def allowed_globals(path: Path) -> dict[str, Any]:
    """Every global the pickle names, resolved; an InputError at the first one outside the allow-list."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a torch zip archive, truncated, ...
        raise InputError(f"not a readable torch checkpoint ({exc})", path=path) from exc
    resolved: dict[str, Any] = {}
    for name in names:
        obj = _resolve(name)
        if obj is None:
            raise InputError(
                f"refused: the checkpoint names {name}, which is outside the allow-list of model classes; "
                "unpickling it could run code",
                path=path,
                hint="pass --trust-checkpoint (config: trust_checkpoint: true) only for a file you trust",
            )
        resolved[name] = obj
    return resolved


def _resolve(name: str) -> Any:
    """The allowed object `name` stands for, or None. Only allow-listed modules are ever imported."""
    data = _data_globals()
    if name in data:
        return data[name]
    module, _, attr = name.rpartition(".")

    def under(prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    if not under(MODEL_MODULES) and module not in CLASS_MODULES:
        return None
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if not isinstance(obj, type):
        return None
    from torch import nn

    return obj if issubclass(obj, nn.Module) or obj.__module__ == module else None


def _model_attribute(obj: Any, name: str) -> Any:
    """`getattr` as pickles of model classes use it (`Detect.forward`), and nothing else."""
    from torch import nn

    if isinstance(obj, type) and issubclass(obj, nn.Module) and not name.startswith("__"):
        return getattr(obj, name)
    if isinstance(obj, nn.Module) and name in {"forward", "forward_fuse"}:
        return getattr(type(obj), name).__get__(obj)
    raise InputError(f"refused: getattr({type(obj).__name__}, {name!r}) while unpickling a checkpoint")


@functools.cache
def _data_globals() -> dict[str, Any]:
    """The plain data of Ultralytics' checkpoints, as Ultralytics' restricted loader allows it."""
    from ultralytics.utils import IterableSimpleNamespace

    scalar = np.float64(0).__reduce__()[0]
    paths = {
        f"{m}.{c}": pathlib.Path().__class__
        for m in ("pathlib", "pathlib._local")
        for c in ("PosixPath", "WindowsPath")
    }
    return {
        "numpy.dtype": np.dtype,
        "numpy.core.multiarray.scalar": scalar,
        "numpy._core.multiarray.scalar": scalar,
        "ultralytics.utils.IterableSimpleNamespace": IterableSimpleNamespace,
        "ultralytics.yolo.utils.IterableSimpleNamespace": IterableSimpleNamespace,
        "builtins.getattr": _model_attribute,  # limited to attributes of model classes, as in Ultralytics
        **paths,
    }
