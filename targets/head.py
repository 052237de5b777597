"""Which nodes of an exported YOLOv8 graph are the Detect head's post-processing.

The head's box and class convolutions quantize well, but what follows them does not: the DFL softmax and
its expectation, the anchor arithmetic that turns distances into pixel boxes (0..640) and the class
sigmoid share no useful INT8 scale. Every INT8 path keeps these nodes in float. torch.onnx names nodes
after the module path (`/model.22/dfl/conv/Conv`), and OpenVINO keeps those names, so one rule serves all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_MODULE_INDEX = re.compile(r"^/model\.(\d+)/")
_HEAD_CONVS = ("cv2.", "cv3.")  # the box and class branches: quantized like the rest of the network


def head_scope(names: Iterable[str]) -> str:
    """`/model.N/` for the last layer (the Detect head), found from the node names."""
    indices = {int(m.group(1)) for name in names if (m := _MODULE_INDEX.match(name))}
    if not indices:
        raise ValueError("no '/model.N/' node names: not a graph exported from an Ultralytics model")
    return f"/model.{max(indices)}/"


def head_postprocess_nodes(names: Iterable[str]) -> list[str]:
    """Names of the head's nodes after its cv2/cv3 branches: DFL, decode, concat and sigmoid."""
    names = list(names)
    scope = head_scope(names)
    return [
        name for name in names if name.startswith(scope) and not name[len(scope) :].startswith(_HEAD_CONVS)
    ]


def onnx_head_postprocess_nodes(onnx_path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return head_postprocess_nodes(node.name for node in graph.node)
