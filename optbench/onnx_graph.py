"""An ONNX model's structure, read without its weights: what the steps and runtimes check before they run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optbench.errors import OptbenchError, refused_reading

ONNX_FILE = "model.onnx"  # an ONNX artifact's model, in its folder: what the onnx and quantize steps write


def load_graph(path: Path) -> Any:
    """The graph of the ONNX file at `path` (weights stored outside the file stay on disk)."""
    import onnx
    from google.protobuf.message import DecodeError

    require_model_file(path)
    try:
        return onnx.load(str(path), load_external_data=False).graph
    except PermissionError as exc:  # another user's file: access is the fix, not deleting what they made
        raise refused_reading(path, exc) from exc
    except (OSError, DecodeError) as exc:
        raise OptbenchError(f"cannot read the ONNX model {path} ({exc}): the file is damaged; {remake(path)}") from exc


def require_model_file(path: Path) -> None:
    """Refuse an artifact whose ONNX file is missing, naming the fix."""
    if not path.is_file():
        raise OptbenchError(f"{path} does not exist: the artifact has no ONNX model; {remake(path)}")


def remake(path: Path) -> str:
    """The fix for a cached artifact's damaged or missing model file: its folder goes, and the step that wrote it
    (an onnx, quantize or peer step) runs again; deleting the file alone leaves a folder the step cache refuses."""
    return f"delete its folder {path.parent} and run the recipe again, which makes it anew"


def is_qdq(graph: Any) -> bool:
    """Whether the model is explicitly quantized: QuantizeLinear nodes, as quantize-static and optimum's static
    INT8 write them."""
    return any(node.op_type == "QuantizeLinear" for node in graph.node)


STANDARD_DOMAINS = ("", "ai.onnx")


def custom_operators(graph: Any) -> list[str]:
    """The operators outside standard ONNX (onnxruntime's fused `com.microsoft` ones, say), sorted: what
    TensorRT's ONNX parser cannot read."""
    return sorted({node.op_type for node in graph.node if node.domain not in STANDARD_DOMAINS})
