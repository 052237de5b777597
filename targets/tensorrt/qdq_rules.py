"""The rules TensorRT's ONNX parser and its Q/DQ fusions apply to an explicit-quantization ONNX, checked
on the host before any engine build.

- TensorRT dequantizes only INT8, FP8 and INT4: an INT32 (quantized bias) or UINT8 `DequantizeLinear`
  stops the parser at the first such node (onnxruntime issues #14229, #17738).
- Quantization is symmetric: every zero point is 0.
- A quantized Conv (its weight comes through `DequantizeLinear`) needs Q/DQ on its input too, or TensorRT
  cannot fuse it into an INT8 convolution and runs it in float behind a reformat. A float Conv reading a
  dequantized input is allowed: the accuracy-driven loop keeps such layers in float on purpose.
- A Concat's quantized inputs and output share one scale, or TensorRT adds reformat layers around it
  (NVIDIA's yolo_deepstream QAT guide; `targets.qdq_concat` makes them so).
- Opset 13 (per-channel `DequantizeLinear`) up to 20, the newest TensorRT 10.0-10.3 (JetPack 6) parse,
  and standard ONNX operators only (an ONNX Runtime contrib op would need a TensorRT plugin).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from targets.qdq_concat import concat_scale_names, producers

MIN_OPSET, MAX_OPSET = 13, 20
SCALE_RTOL = 1e-6
SHOWN = 8  # violations listed in the error; the rest are counted


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    detail: str

    def __str__(self) -> str:
        return f"{self.node}: {self.detail} [{self.rule}]"


def _dq_types(graph: Any) -> dict[str, int]:
    """DequantizeLinear node name -> the ONNX element type it dequantizes."""
    import onnx

    initializers = {init.name: init.data_type for init in graph.initializer}
    made_by = producers(graph)
    found: dict[str, int] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        if len(node.input) > 2 and node.input[2] in initializers:
            found[node.name] = initializers[node.input[2]]
        elif node.input[0] in initializers:
            found[node.name] = initializers[node.input[0]]
        elif (q := made_by.get(node.input[0])) is not None and q.op_type == "QuantizeLinear":
            # A QuantizeLinear without a zero point makes UINT8 (ONNX's default).
            has_zero_point = len(q.input) > 2 and q.input[2] in initializers
            found[node.name] = initializers[q.input[2]] if has_zero_point else onnx.TensorProto.UINT8
    return found


def _types_and_zero_points(graph: Any) -> list[Violation]:
    import onnx
    from onnx import numpy_helper

    allowed = {onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4}
    found = []
    for name, element in _dq_types(graph).items():
        if element not in allowed:
            kind = onnx.TensorProto.DataType.Name(element)
            why = "a quantized bias: set QuantizeBias off" if kind == "INT32" else "not INT8/FP8/INT4"
            found.append(Violation("dequantize-type", name, f"DequantizeLinear of {kind} ({why})"))
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero_point = initializers.get(node.input[2])
            if zero_point is not None and numpy_helper.to_array(zero_point).astype(np.float64).any():
                found.append(Violation("symmetric", node.name, "zero point is not 0 (TensorRT is symmetric)"))
    return found


def _convs(graph: Any) -> list[Violation]:
    made_by = producers(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        kinds = [getattr(made_by.get(name), "op_type", None) for name in node.input[:2]]
        if kinds[1] == "DequantizeLinear" and kinds[0] != "DequantizeLinear":
            found.append(Violation("conv-pairs", node.name, "weight has Q/DQ but the input has none"))
    return found


def _concats(graph: Any) -> list[Violation]:
    from onnx import numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    found = []
    for node, names in concat_scale_names(graph).items():
        values = [
            float(numpy_helper.to_array(initializers[n]).ravel()[0]) for n in names if n in initializers
        ]
        if values and not np.allclose(values, values[0], rtol=SCALE_RTOL, atol=0):
            detail = f"inputs and output have {len(set(values))} scales, {min(values):.6g}..{max(values):.6g}"
            found.append(Violation("concat-scales", node, detail))
    return found


def check_qdq(onnx_path: Path) -> list[Violation]:
    """Every rule the file breaks (an empty list: TensorRT's parser accepts its Q/DQ as is)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf's DecodeError, a missing file
        raise InputError(f"not a readable ONNX file: {exc}", path=onnx_path) from exc
    graph = model.graph
    found: list[Violation] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        found.append(Violation("opset", "model", f"opset {opset}, TensorRT needs {MIN_OPSET}..{MAX_OPSET}"))
    found += [
        Violation("domain", node.name, f"{node.domain}.{node.op_type} is not a standard ONNX operator")
        for node in graph.node
        if node.domain not in ("", "ai.onnx")
    ]
    if not any(node.op_type == "DequantizeLinear" for node in graph.node):
        found.append(Violation("qdq", "model", "no DequantizeLinear node: not a Q/DQ ONNX"))
    return found + _types_and_zero_points(graph) + _convs(graph) + _concats(graph)


def require_valid_qdq(onnx_path: Path) -> None:
    """Refuse a Q/DQ ONNX that TensorRT would reject or run badly, naming the nodes."""
    found = check_qdq(onnx_path)
    if found:
        shown = "; ".join(str(v) for v in found[:SHOWN])
        more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
        raise InputError(
            f"this Q/DQ ONNX breaks TensorRT's rules: {shown}{more}",
            path=onnx_path,
            hint="make it with `edgepipe build --target tensorrt --precision int8 --qdq-only`",
        )
