"""Which TensorRT this machine has, what its API offers, and how to install the right one.

TensorRT 10 (JetPack 6, `tensorrt-cu12<11`) builds weakly typed networks, with precision flags and an
implicit-INT8 calibrator. TensorRT 11 removed `BuilderFlag.FP16`/`INT8`, `int8_calibrator` and
`IInt8EntropyCalibrator2`: every network is strongly typed and takes its precision from the ONNX.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from core.errors import BackendUnavailable, EdgepipeError
from targets.tensorrt.cuda_memory import cuda_library

JETSON_RELEASE = Path("/etc/nv_tegra_release")  # present on every L4T / JetPack system
# The distributions TensorRT's Python package comes in: `tensorrt` (JetPack's, NVIDIA's containers, PyPI's
# meta package) and PyPI's wheels per CUDA major; the cache key holds each one's version (or "absent").
DISTRIBUTIONS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")


class TensorRtFailure(EdgepipeError):
    """A TensorRT call returned failure (None, False): the message names the call."""


def on_jetson() -> bool:
    return platform.machine() == "aarch64" and JETSON_RELEASE.is_file()


def install_hint(jetson: bool | None = None) -> str:
    """The TensorRT that fits this platform: JetPack's own on a Jetson (PyPI's wheels are x86_64/SBSA
    builds that do not run there), a pinned major version of the CUDA 12 wheels elsewhere."""
    if on_jetson() if jetson is None else jetson:
        return (
            "on a Jetson use JetPack's own TensorRT (`sudo apt install nvidia-jetpack`, or the "
            "l4t-jetpack image of Dockerfile.jetson), never `pip install tensorrt`; the runner also needs "
            "pycuda (`pip install pycuda`) or cuda-python"
        )
    return (
        "on x86_64 Linux with an NVIDIA GPU: `pip install 'tensorrt-cu12<11'` for TensorRT 10 (fp16 flags, "
        "the int8 calibrator) or `pip install 'tensorrt-cu12>=11'` for TensorRT 11 (strongly typed: Q/DQ "
        "int8, fp32), or NVIDIA's TensorRT container (Dockerfile.x86 --target gpu); the runner also needs "
        "`pip install 'cuda-python>=12,<13'` or pycuda"
    )


@dataclass(frozen=True)
class TrtApi:
    """What the installed TensorRT offers, decided once from its version."""

    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 and later: no precision flags, no implicit calibration."""
        return self.major >= 11


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(f"tensorrt is not installed. {install_hint()}") from exc
    return tensorrt


def availability() -> tuple[bool, str]:
    try:
        trt = import_tensorrt()
    except BackendUnavailable as exc:
        return False, str(exc)
    library = cuda_library()
    if library is None:
        return False, f"tensorrt {trt.__version__} found, but not cuda-python or pycuda. {install_hint()}"
    return True, f"tensorrt {trt.__version__} with {library}"


def checked(value, call: str, hint: str | None = None):
    """`value`, unless TensorRT signalled failure with None or False (its Python API raises rarely)."""
    if value is None or value is False:
        raise TensorRtFailure(f"TensorRT: {call} failed (see TensorRT's log above)", hint=hint)
    return value
