"""Checks of a recipe's checkpoint, distill students and steps that refuse it before any step runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optbench.encoding import load_tokenizer
from optbench.errors import OptbenchError
from optbench.hf_config import has_classifier_head, read_hf_config
from optbench.recipe import Recipe, chain_name
from optbench.steps import RecipeStep
from optbench.steps.cache import cannot_run_here
from optbench.steps.distill import check_student_labels

# Models whose position ids start after the padding index (transformers' RobertaEmbeddings and its copies):
# they take max_position_embeddings - pad_token_id - 1 tokens.
_OFFSET_POSITIONS = (
    "roberta",
    "xlm-roberta",
    "camembert",
    "data2vec-text",
    "optbench-pruned-roberta",
    "optbench-pruned-xlm-roberta",
)


def _token_limit(config: dict[str, Any]) -> int | None:
    """The most tokens the checkpoint's position embeddings take, or None when its config does not say."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    pad = config.get("pad_token_id")
    if config.get("model_type") in _OFFSET_POSITIONS and isinstance(pad, int):
        return positions - pad - 1
    return positions


def check_lengths(recipe: Recipe, config: dict[str, Any], checkpoint: str) -> None:
    """Refuse token lengths beyond the model's position embeddings before any step runs (torch would fail
    mid-step with a size mismatch, TensorRT on the GPU): the dataset's max_length, [model.finetune]'s where the
    checkpoint is fine-tuned (a classifier's is unused), fixed [bench] lengths, steps' own, and the longest sequence
    of a TensorRT provider's profile."""
    asked = [("[dataset] max_length", recipe.dataset.max_length)]
    if not has_classifier_head(config):
        asked.append(("[model.finetune] max_length", recipe.finetune.max_length))
    _refuse_beyond(config, checkpoint, asked + _lengths_asked(recipe, recipe.steps()))


def check_students(recipe: Recipe, teacher_labels: Sequence[str]) -> None:
    """Refuse a distill student from a checkpoint folder as the checkpoint is refused (`checked_folder`: a tokenizer
    without a pad token, or of more tokens than the student embeds), a student classifier whose labels are not
    `teacher_labels` (the baseline's, which every step keeps), and the lengths it meets beyond its own position
    embeddings, as `check_lengths` does the checkpoint's: the dataset's max_length, [bench] lengths, and the distill
    step's and later steps' of its chain. The step refused these, or its training failed with a size mismatch
    traceback, only once it ran, after the fine-tune and the steps before it."""
    for chain in recipe.chains:
        for index, step in enumerate(chain):
            folder = getattr(step.config, "student_folder", None)
            if folder is not None:
                student = f"the student {folder} of {step.where}"
                asked = [("[dataset] max_length", recipe.dataset.max_length), *_lengths_asked(recipe, chain[index:])]
                config = checked_folder(folder, student)
                check_student_labels(config, teacher_labels, student)
                _refuse_beyond(config, student, asked)


def _lengths_asked(recipe: Recipe, steps: Sequence[RecipeStep]) -> list[tuple[str, int]]:
    """The fixed token lengths every model meets ([bench] lengths, a TensorRT provider's longest profile) and
    those of `steps`, each with where it is set."""
    asked = [("[bench] seq_len", s) for s in recipe.bench.seq_lens if isinstance(s, int)]
    asked += [(f"{s.where} max_length", s.config.max_length) for s in steps if getattr(s.config, "max_length", None)]
    asked += [(f"{s.where} seq_len", n) for s in steps for n in getattr(s.config, "seq_lens", ()) if isinstance(n, int)]
    asked += [
        (f"runtime {spec.label} trt_profile max sequence", spec.options["trt_profile"]["max"][1])
        for spec in recipe.bench.runtimes
        if "trt_profile" in spec.options
    ]
    return asked


def _refuse_beyond(config: dict[str, Any], model: str, asked: list[tuple[str, int]]) -> None:
    """Refuse the lengths of `asked` beyond the position embeddings of `model`, whose config.json is `config`."""
    limit = _token_limit(config)
    beyond = [f"{where} = {length}" for where, length in asked if limit is not None and length > limit]
    if beyond:
        raise OptbenchError(f"{', '.join(beyond)} beyond the {limit} positions of {model}: use at most {limit} tokens")


def checked_folder(folder: Path, model: str) -> dict[str, Any]:
    """The config.json of the checkpoint folder of `model` (the recipe's checkpoint, a distill student), after the
    checks of its files that can refuse it before any step runs: `read_hf_config`'s, a tokenizer no step could pad
    with (`load_tokenizer`), and one of more tokens than the model embeds."""
    config = read_hf_config(folder)
    _check_vocabulary(len(load_tokenizer(folder)), config, model)
    return config


def _check_vocabulary(tokens: int, config: dict[str, Any], checkpoint: str) -> None:
    """Refuse a tokenizer with more tokens than the model has embeddings (`vocab_size`): a text holding one of the
    others failed the first job or step that met it with torch's bare "index out of range in self"."""
    embeddings = config.get("vocab_size")
    if isinstance(embeddings, int) and tokens > embeddings:
        raise OptbenchError(
            f"the tokenizer in {checkpoint} has {tokens} tokens and the model embeds {embeddings} (vocab_size): "
            "tokens past the model's would have no embedding; save the tokenizer the model was trained with into "
            "the folder (tokenizer.save_pretrained(folder))"
        )


def check_step_inputs(recipe: Recipe, config: dict[str, Any]) -> None:
    """Refuse, before any step runs, a step that would refuse the model its place in its chain gives it (prune
    takes BERT, RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT only; a distill student keeps the layers of
    BERT-style models and DistilBERT only, those it has, and no more than its teacher's), rather than after the
    chains before it have run. Each step with a `preflight` refuses from its input's config.json and gives its
    output's; a step without one, or one whose input is not known from the recipe (None), refuses nothing."""
    for chain in recipe.chains:
        model: dict[str, Any] | None = config
        for step in chain:
            preflight = getattr(step.config, "preflight", None)
            try:
                model = preflight(model) if preflight is not None else None
            except OptbenchError as exc:
                raise OptbenchError(f"the chain {chain_name(chain)}, step {step.shown}: {exc}") from None


def check_steps_run_here(recipe: Recipe) -> None:
    """Refuse, before any step runs, a recipe with a step this machine cannot run (`cannot_run_here`: a tensorrt
    step without TensorRT or a CUDA GPU), naming the first one the run meets: the run would stop there with that
    error anyway (exit 2), after the fine-tune and the steps before it. The dry run warns of the same steps."""
    for chain in recipe.chains:
        for step in chain:
            reason = cannot_run_here(step.config)
            if reason is not None:
                raise OptbenchError(
                    f"the chain {chain_name(chain)}, step {step.shown}, cannot run on this machine: {reason}. Or "
                    "leave that chain out of the recipe; `optbench run RECIPE --dry-run` lists every step and "
                    "runtime this machine cannot run"
                )
