"""Peers: the pipelines users would otherwise run (optimum-onnx, torchao), as recipe steps.

A peer step hands back an artifact that optbench's own harness then measures beside its variants, on the
same data in the same run. Peer steps are named `peer-*`; a variant made by one is a peer in the report,
which gives every other variant its speedup over the fastest peer within an accuracy budget.
"""

from __future__ import annotations

from collections.abc import Iterable

PEER_STEP_PREFIX = "peer-"


def is_peer(step_names: Iterable[str]) -> bool:
    """Whether a variant with these steps in its lineage came (partly) out of a peer's pipeline."""
    return any(name.startswith(PEER_STEP_PREFIX) for name in step_names)
