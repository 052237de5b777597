"""Make Ultralytics work without a network: no downloads, no telemetry, a local font.

Ultralytics wants `Arial.ttf` in its config dir and downloads it when missing. We point
`YOLO_CONFIG_DIR` at a folder of ours and place matplotlib's bundled DejaVuSans there under
the names Ultralytics asks for. A user who set `YOLO_CONFIG_DIR` keeps their own folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def _bundled_font() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    font = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.is_file() else None


def configure_offline() -> None:
    """Set the environment Ultralytics reads at import time; idempotent and cheap."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # NNCF imports torch's cpp_extension, which warns about CUDA_HOME on every CPU-only machine.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    config_dir = Path(
        os.environ.setdefault(
            "YOLO_CONFIG_DIR",
            str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgepipe"),
        )
    )
    ultralytics_dir = config_dir / "Ultralytics"
    font = _bundled_font()
    for target_dir in (config_dir, ultralytics_dir):
        for name in FONT_NAMES:
            dest = target_dir / name
            if font is None or dest.exists():
                continue
            target_dir.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(font, tmp)
            os.replace(tmp, dest)
