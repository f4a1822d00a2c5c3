"""Third-party lines no user can act on are dropped while optbench runs; every other record goes through."""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys

import pytest

from optbench import cli
from optbench.quiet import third_party_noise_dropped

SO_FAILED = (
    "Failed to load /venv/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: Could not load this "
    "library: /venv/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so"
)
ENUM_DEPRECATED = (
    "%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type. Calling "
    "register_constant() on Enum subclasses is deprecated and will be an error in a future release."
)
TORCHAO_ENUM = enum.Enum("KernelPreference", "AUTO", module="torchao.quantization.quantize_.common.kernel_preference")
NO_TRITON = "Warning: Detected no triton, on systems without Triton certain kernels will not work"
EXPORTER = "torch.onnx._internal.exporter._registration"
PRE_PROCESS = (
    "Please consider to run pre-processing before quantization. Refer to example: https://github.com/microsoft/"
    "onnxruntime-inference-examples/blob/main/quantization/image_classification/cpu/ReadMe.md "
)
OWN_ENUM = enum.Enum("Mode", "A", module="somebody.else")


def passes(name: str, msg: str, *args: object) -> bool:
    logger = logging.getLogger(name)
    return bool(logger.filter(logger.makeRecord(name, logging.WARNING, "x.py", 1, msg, args, None)))


def test_known_noise_is_dropped_other_records_pass_and_the_loggers_are_restored() -> None:
    with third_party_noise_dropped():
        assert not passes("torchao", SO_FAILED)
        assert not passes("torch.utils._pytree", ENUM_DEPRECATED, TORCHAO_ENUM)
        assert passes("torchao", "Skipping import of cpp extensions due to incompatible torch version")
        assert passes("torchao", "Failed to load /somewhere/else/_C_mine.so: no such file")
        assert passes("torchao", "Failed to load /venv/site-packages/mytorchao/_C.so: no such file")
        assert passes("torchao", "Failed to load /venv/site-packages/torchao/_C/kernels/mine.so: no such file")
        assert passes("torchao", f"Retrying: {SO_FAILED}")  # a message that quotes the line is another message
        assert passes("torch.utils._pytree", ENUM_DEPRECATED, OWN_ENUM)
        assert passes("torch.utils._pytree", "%s is already registered as pytree node", TORCHAO_ENUM)
        assert passes("torch.utils._pytree", "%(node)s is registered", {"node": "a mapping, not a tuple"})
        assert not passes(EXPORTER, "torchvision is not installed. Skipping %s", "torchvision::nms")
        assert passes(EXPORTER, "Setting ONNX exporter to use operator set version %s because", 18)
        assert not passes("torchao.kernel.intmm", NO_TRITON)
        assert passes("torchao.kernel.intmm", f"{NO_TRITON}, and the matmul you asked for is one of them")
        assert passes("torchao.quantization", SO_FAILED)  # a child logger's own records are its own
        assert not passes("root", PRE_PROCESS)
        assert passes("root", "Please consider something else")
    assert passes("torchao", SO_FAILED) and passes("torch.utils._pytree", ENUM_DEPRECATED, TORCHAO_ENUM)
    assert not any(logging.getLogger(name).filters for name in ("torchao", "torch.utils._pytree", EXPORTER))


def test_importing_torchao_and_transformers_in_the_block_prints_nothing_of_it() -> None:
    pytest.importorskip("torchao")

    def importing(block: str) -> subprocess.Popen[str]:
        script = (
            "import contextlib\n"
            "from optbench.quiet import third_party_noise_dropped\n"
            f"with {block}:\n"
            "    import torchao, transformers.quantizers\n"
        )
        return subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def stderr(process: subprocess.Popen[str]) -> str:
        err = process.communicate()[1]
        assert process.returncode == 0, err
        return err

    # both imports run at once: each is a fresh interpreter spending seconds on torch and transformers
    with importing("contextlib.nullcontext()") as control, importing("third_party_noise_dropped()") as quiet:
        control_err, quiet_err = stderr(control), stderr(quiet)
    noise = ("Failed to load", "register_constant()")
    # the control: without the filter the import must print the noise, or the test below would prove nothing
    if not any(line in control_err for line in noise):
        pytest.skip("this torch and torchao import without the noise (kernel libraries loaded, no enum note)")
    assert not any(line in quiet_err for line in noise), quiet_err


def test_the_command_drops_the_noise_and_shows_other_torchao_warnings(monkeypatch, caplog) -> None:
    def env(args: object) -> int:
        logging.getLogger("torchao").warning(SO_FAILED)
        logging.getLogger("torchao").warning("torchao: a warning the user should see")
        return 0

    monkeypatch.setattr(cli, "_env", env)
    assert cli.main(["env"]) == 0
    assert [r.getMessage() for r in caplog.records if r.name == "torchao"] == ["torchao: a warning the user should see"]
    assert logging.getLogger("torchao").filters == []
    caplog.clear()
    assert cli.main(["env", "-v"]) == 0  # -v shows every line
    assert [r.getMessage() for r in caplog.records if r.name == "torchao"] == [
        SO_FAILED,
        "torchao: a warning the user should see",
    ]


def test_the_command_turns_transformers_progress_bars_off_for_itself_and_its_jobs() -> None:
    """transformers reads the switches when imported, after main has set them; job processes inherit them."""
    script = (
        "from optbench import cli\n"
        "cli.main(['env'])\n"
        "from transformers.utils import logging\n"
        "print(logging.is_progress_bar_enabled(), logging.get_verbosity() == logging.ERROR)\n"
    )
    switches = ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")
    env = {k: v for k, v in os.environ.items() if k not in switches}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    assert out.splitlines()[-1] == "False True"
