"""The units the accuracy loop returns to float: the quantizable nodes of the graph, grouped by module.

torch.onnx names nodes after the module path, so an Ultralytics `Conv` block (`/model.2/cv1/conv/Conv`,
`/model.2/cv1/act/Sigmoid`, `/model.2/cv1/act/Mul`) becomes one group `/model.2/cv1`: its input, weight
and activation quantizers go to float together. Other quantizable nodes group by the module that owns
them (a C2f's Split and Concat, a bottleneck's Add). The Detect head's post-processing is not a group:
it is always float.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from targets.head import head_postprocess_nodes
from targets.qdq import QdqScheme

# Submodules of an Ultralytics Conv block that belong to the block itself.
_BLOCK_PARTS = {"conv", "act", "bn"}


@dataclass(frozen=True)
class LayerGroup:
    name: str  # module path, e.g. "/model.2/cv1"
    nodes: tuple[str, ...]


def group_name(node_name: str) -> str:
    """`/model.2/cv1/act/Mul` -> `/model.2/cv1`; `/model.2/Split` -> `/model.2`."""
    scope = node_name.rsplit("/", 1)[0]
    parent, _, last = scope.rpartition("/")
    return parent if last in _BLOCK_PARTS and parent else scope


def quantizable_op_types(scheme: QdqScheme) -> set[str]:
    """What onnxruntime.quantization quantizes in QDQ format unless told otherwise."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(scheme.op_types) if scheme.op_types else set(QDQRegistry) | set(QLinearOpsRegistry)


def quantizable_groups(onnx_path: Path, scheme: QdqScheme) -> list[LayerGroup]:
    """Groups in graph order, from the model as `quantize_qdq` sees it (after ORT's pre-processing)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgepipe-layers-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        nodes = list(onnx.load(str(prepared), load_external_data=False).graph.node)
    head = set(head_postprocess_nodes(node.name for node in nodes))
    op_types = quantizable_op_types(scheme)
    groups: dict[str, list[str]] = {}
    for node in nodes:
        if node.op_type in op_types and node.name not in head:
            groups.setdefault(group_name(node.name), []).append(node.name)
    return [LayerGroup(name, tuple(members)) for name, members in groups.items()]
