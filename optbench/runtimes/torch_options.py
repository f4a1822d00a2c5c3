"""The torch runtime's options, parsed without importing torch: recipes and stored reports are checked
with them, and `optbench gate` or `report` should not pay torch's import for that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optbench.configs import toml_value
from optbench.errors import OptbenchError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
OPTIONS = ("compile", "cuda_graphs", "freezing")
# each option with the values it takes besides its default, all of which show in labels (runtimes.every_spec)
LABELLED = {"compile": COMPILE_MODES, "cuda_graphs": (True,), "freezing": (True,)}


@dataclass(frozen=True)
class TorchOptions:
    """The torch runtime's options: `compile` (false, true or a torch.compile mode), `cuda_graphs` (capture the
    eager model as one CUDA graph per input shape and replay it) and `freezing` (with compile: Inductor takes the
    weights as constants, folds them and, on CPU, prepacks Linear layers for oneDNN, torchao's INT8 ones
    included, as PyTorch's x86 Inductor guides run inference)."""

    compile: str | None = None
    cuda_graphs: bool = False
    freezing: bool = False

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
                f"runtime torch compile = {toml_value(mode)}: use true, false or a torch.compile mode "
                f"{list(COMPILE_MODES)}"
            )
        graphs = options.get("cuda_graphs", False)
        if not isinstance(graphs, bool):
            raise OptbenchError(f"runtime torch cuda_graphs = {toml_value(graphs)}: use true or false")
        if graphs and device != "cuda":
            raise OptbenchError('runtime torch cuda_graphs = true needs device = "cuda"')
        if graphs and mode:
            raise OptbenchError(
                'runtime torch: choose cuda_graphs or compile, not both (compile = "reduce-overhead" compiles '
                "and captures CUDA graphs)"
            )
        freezing = options.get("freezing", False)
        if not isinstance(freezing, bool):
            raise OptbenchError(f"runtime torch freezing = {toml_value(freezing)}: use true or false")
        if freezing and not mode:
            raise OptbenchError(
                "runtime torch freezing = true is a torch.compile setting: add compile = true (or a mode)"
            )
        return cls(mode or None, graphs, freezing)

    def tag(self) -> str:
        """The options in a runtime's label: "" (eager), "compile", "compile-max-autotune", "compile-freezing" or
        "cuda-graphs"."""
        if self.cuda_graphs:
            return "cuda-graphs"
        if not self.compile:
            return ""
        tag = "compile" if self.compile == "default" else f"compile-{self.compile}"
        return f"{tag}-freezing" if self.freezing else tag
