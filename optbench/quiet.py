"""Third-party log lines that no optbench user can act on, dropped by exact message while optbench runs.

transformers imports torchao whenever it is installed (it is, with optbench), so every run that loads a model
imports it, and the import logs:
- on the "torchao" logger, "Failed to load .../torchao/_C....so: ..." for each of its kernel libraries built
  for CUDA or for another Python, which this build cannot load and optbench's INT8 scheme does not use;
- on torch's "torch.utils._pytree" logger, "<enum ...> is an Enum subclass and is now natively supported by
  torch.compile ... register_constant() on Enum subclasses is deprecated" for torchao's enums: a note to
  torchao's developers;
- on "torchao.kernel.intmm", "Detected no triton ...": its Triton matmul is used only with
  TORCHAO_AUTOTUNER_ENABLE=1, and CPU builds of torch have no Triton.
torch's ONNX exporter logs "torchvision is not installed. Skipping torchvision::nms" (and three more image
ops) on every export: ops no BERT classifier has.
onnxruntime's quantize_dynamic logs "Please consider to run pre-processing before quantization ..." on the root
logger for each model it quantizes: optbench quantizes the export onnxruntime already optimized and fused, and
runs that pre-processing itself before static quantization, where it matters.
Every other record of those loggers, and of every other logger, goes through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_KERNEL_LIBRARY_NOT_LOADED = re.compile(r"Failed to load .*[/\\]torchao[/\\]_C[^/\\]*\.so: ")
_ENUM_REGISTRATION_DEPRECATED = "%s is an Enum subclass and is now natively supported by torch.compile"


def _torchao_kernel_library(record: logging.LogRecord) -> bool:
    return bool(_KERNEL_LIBRARY_NOT_LOADED.match(record.getMessage()))


def _torchao_enum_registration(record: logging.LogRecord) -> bool:
    enum = record.args[0] if isinstance(record.args, tuple) and record.args else None
    from_torchao = getattr(enum, "__module__", "").startswith("torchao.")
    return from_torchao and str(record.msg).startswith(_ENUM_REGISTRATION_DEPRECATED)


def _message_is(template: str) -> Callable[[logging.LogRecord], bool]:
    return lambda record: record.msg == template


# a logger's filters see only the records made by that logger, not those its children pass up
NOISE: dict[str, Callable[[logging.LogRecord], bool]] = {
    "torchao": _torchao_kernel_library,
    "torch.utils._pytree": _torchao_enum_registration,
    "torchao.kernel.intmm": _message_is(
        "Warning: Detected no triton, on systems without Triton certain kernels will not work"
    ),
    "torch.onnx._internal.exporter._registration": _message_is("torchvision is not installed. Skipping %s"),
    "root": lambda record: str(record.msg).startswith("Please consider to run pre-processing before quantization."),
}


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not NOISE[record.name](record)


@contextmanager
def third_party_noise_dropped() -> Iterator[None]:
    """Drop the records in NOISE while the block runs; the loggers are left as they were."""
    drop = _DropNoise()
    loggers = [logging.getLogger(name) for name in NOISE]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
