"""One INT8 scale per Concat in a Q/DQ graph.

TensorRT runs a Concat in INT8 only when every quantized input and the quantized output share one scale;
otherwise it inserts reformat layers around it (NVIDIA's yolo_deepstream QAT guide). ONNX Runtime
calibrates each tensor on its own, so the scales around a Concat differ. Raising all of them to the
largest keeps every tensor inside its range (symmetric INT8: the scale is the range over 127) at the
cost of a coarser step for the smaller ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def producers(graph: Any) -> dict[str, Any]:
    return {output: node for node in graph.node for output in node.output}


def consumers(graph: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def concat_scale_names(graph: Any) -> dict[str, list[str]]:
    """Concat node name -> the scale tensors of the DequantizeLinear nodes feeding it, of the
    QuantizeLinear nodes reading its output, and of the Q nodes paired with those DQ nodes."""
    made_by, read_by = producers(graph), consumers(graph)
    found: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type != "Concat":
            continue
        names: list[str] = []
        for name in node.input:
            dq = made_by.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                names.append(dq.input[1])
                q = made_by.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear":
                    names.append(q.input[1])
        names += [q.input[1] for q in read_by.get(node.output[0], []) if q.op_type == "QuantizeLinear"]
        if names:
            found[node.name] = list(dict.fromkeys(names))
    return found


def _groups(links: list[list[str]]) -> list[set[str]]:
    """Connected groups of scale names (a tensor read by two Concats joins both)."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for names in links:
        for name in names[1:]:
            parent[root(name)] = root(names[0])
    groups: dict[str, set[str]] = {}
    for name in parent:
        groups.setdefault(root(name), set()).add(name)
    return list(groups.values())


def unify_concat_scales(onnx_path: Path) -> int:
    """Rewrite `onnx_path` with one scale per group of Concat-linked scales; returns how many changed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    initializers = {init.name: init for init in model.graph.initializer}
    changed = 0
    for group in _groups(list(concat_scale_names(model.graph).values())):
        values = {name: numpy_helper.to_array(initializers[name]) for name in group if name in initializers}
        if not values or any(v.size != 1 for v in values.values()):
            continue  # a per-channel or computed scale is not an activation's: leave it
        largest = max(float(v) for v in values.values())
        for name, value in values.items():
            if float(value) != largest:
                initializers[name].CopyFrom(numpy_helper.from_array(np.array(largest, value.dtype), name))
                changed += 1
    fd, tmp = tempfile.mkstemp(dir=Path(onnx_path).parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, onnx_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return changed
