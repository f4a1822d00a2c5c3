"""The torch runtime's options, parsed without importing torch: recipes and stored reports are checked
with them, and `optbench gate` or `report` should not pay torch's import for that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optbench.errors import OptbenchError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
OPTIONS = ("compile", "cuda_graphs")


@dataclass(frozen=True)
class TorchOptions:
    """The torch runtime's options: `compile` (false, true or a torch.compile mode) and `cuda_graphs`
    (capture the eager model as one CUDA graph per input shape and replay it)."""

    compile: str | None = None
    cuda_graphs: bool = False

    @classmethod
    def parse(cls, device: str, options: dict[str, Any], precision: str = "fp32") -> TorchOptions:
        """Check a recipe's `options` table for runtime torch, and its precision on this device; a bad value is
        an error naming the fix."""
        if device == "cpu" and precision != "fp32":
            raise OptbenchError(
                f"runtime torch on cpu runs fp32 only (asked {precision}): reduced precision is a GPU option"
            )
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise OptbenchError(f"runtime torch has no option(s) {unknown}: its options are {list(OPTIONS)}")
        mode = options.get("compile", False)
        if mode is True:
            mode = "default"
        if mode is not False and mode not in COMPILE_MODES:
            raise OptbenchError(
                f"runtime torch compile = {mode!r}: use true, false or a torch.compile mode {list(COMPILE_MODES)}"
            )
        graphs = options.get("cuda_graphs", False)
        if not isinstance(graphs, bool):
            raise OptbenchError(f"runtime torch cuda_graphs = {graphs!r}: use true or false")
        if graphs and device != "cuda":
            raise OptbenchError('runtime torch cuda_graphs = true needs device = "cuda"')
        if graphs and mode:
            raise OptbenchError(
                'runtime torch: choose cuda_graphs or compile, not both (compile = "reduce-overhead" compiles '
                "and captures CUDA graphs)"
            )
        return cls(mode or None, graphs)

    def tag(self) -> str:
        """The options in a runtime's label: "" (eager), "compile", "compile-max-autotune" or "cuda-graphs"."""
        if self.cuda_graphs:
            return "cuda-graphs"
        if self.compile:
            return "compile" if self.compile == "default" else f"compile-{self.compile}"
        return ""
