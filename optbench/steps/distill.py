"""Knowledge distillation: a smaller student trained to imitate a trained classifier (the teacher).

The teacher is the step's input artifact, a Hugging Face checkpoint (distill before exporting); its logits on
the train split are computed once and cached. The student starts from a copy of the teacher, from the packaged
paraphrase-MiniLM-L3-v2, or from a checkpoint folder; then keeps the `layers` chosen and, optionally,
fewer FFN neurons; then trains on temperature-scaled KL to the teacher's logits plus cross-entropy on
the labels, optionally with hidden-state and attention transfer. It is saved as a normal Hugging Face
checkpoint that every later step accepts.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optbench.artifact import ModelArtifact, content_hash
from optbench.atomic import write_npy_atomic
from optbench.configs import config_to_dict, recipe_path, toml_value
from optbench.data import LabelledData, Split
from optbench.encoding import encode, load_tokenizer
from optbench.environment import installed_version, usable_cores
from optbench.errors import OptbenchError, did_you_mean
from optbench.formats import check_step_input
from optbench.hf_config import config_key, has_classifier_head, head_config, hf_label_names, read_hf_config
from optbench.model_inputs import model_input_names
from optbench.packaged_models import (
    DEFAULT_PACKAGE,
    PARAPHRASE_L3,
    PARAPHRASE_L3_LAYERS,
    PARAPHRASE_PACKAGE,
    default_tokenizer,
    paraphrase_l3_encoder,
)
from optbench.progress import Progress
from optbench.runtimes import RuntimeSpec, load_runtime
from optbench.surgery import (
    check_layer_choice,
    check_layer_list,
    check_layers_within,
    config_depth,
    encoder_layers,
    keep_layers,
    layer_shapes,
    narrow_ffn,
    self_attention,
)
from optbench.training import TrainingConfig, encode_rows, predictions, train

log = logging.getLogger(__name__)

TEACHER = "teacher"
TEACHER_BATCH_SIZE = 64


@dataclass(frozen=True)
class LogitDistillation:
    """The logit terms of a distillation loss, for the steps that train against a teacher's logits."""

    temperature: float = 2.0
    distill_weight: float = 0.5
    label_weight: float = 0.5

    def check_logit_terms(self) -> None:
        if self.temperature <= 0:
            raise OptbenchError(f"temperature = {self.temperature}: use a value above 0 (2 is usual)")
        if min(self.distill_weight, self.label_weight) < 0:
            raise OptbenchError("distill_weight and label_weight must be 0 or more")

    def logit_loss(self, student_logits: Any, teacher_logits: Any, labels: Any) -> Any:
        return distillation_loss(
            student_logits,
            teacher_logits,
            labels,
            temperature=self.temperature,
            distill_weight=self.distill_weight,
            label_weight=self.label_weight,
        )


@dataclass(frozen=True)
class DistillConfig(TrainingConfig, LogitDistillation):
    """The student, and the weights of the loss terms (each term is off at weight 0).

    `student`: "teacher" (a copy of the teacher), "paraphrase-minilm-l3" (the packaged 3-layer encoder)
    or a Hugging Face checkpoint folder. `layers`: which of the student's layers to keep, e.g. [0, 2, 4]
    (all when left out). `intermediate_size`: keep this many FFN neurons per layer, the largest by weight
    magnitude.
    """

    name: ClassVar[str] = "distill"
    input_format: ClassVar[str] = "hf"
    output_format: ClassVar[str] = "hf"
    student: str = TEACHER
    layers: tuple[int, ...] | None = None
    intermediate_size: int | None = None
    hidden_weight: float = 0.0
    attention_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_logit_terms()
        if self.layers is not None:
            check_layer_choice(self.layers)  # the model's own depth bounds them: preflight, from its config.json
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise OptbenchError(f"intermediate_size = {self.intermediate_size}: keep 1 or more FFN neurons")
        weights = (self.distill_weight, self.label_weight, self.hidden_weight, self.attention_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise OptbenchError(
                "distill_weight, label_weight, hidden_weight and attention_weight must be 0 or more, and not all 0"
            )

    @property
    def attention_implementation(self) -> dict[str, str]:
        """Loading keywords: attention transfer reads attention probabilities, which only the eager
        implementation returns."""
        return {"attn_implementation": "eager"} if self.attention_weight else {}

    @property
    def step_version(self) -> int:  # type: ignore[override]
        """2 with attention transfer, whose students changed (no dropout on the compared probabilities);
        the other configs' did not, and keep their caches. `version` adds the epochs' own bump."""
        return 2 if self.attention_weight else 1

    @property
    def libraries(self) -> tuple[str, ...]:  # type: ignore[override]
        """The distributions whose releases make this step's output (their versions key its cache): torch and
        transformers, and for the packaged student the packages that ship its weights and its tokenizer."""
        packaged = (PARAPHRASE_PACKAGE, DEFAULT_PACKAGE) if self.student == PARAPHRASE_L3 else ()
        return (*TrainingConfig.libraries, *packaged)

    @property
    def student_folder(self) -> Path | None:
        """The checkpoint folder the student starts from; None for the teacher's copy and the packaged student."""
        return None if self.student in (TEACHER, PARAPHRASE_L3) else Path(self.student)

    def input_hashes(self) -> dict[str, str]:
        """A student folder's content hash, for the cache key: retrained in place, it is another student."""
        folder = self.student_folder
        if folder is None or not folder.is_dir():
            return {}  # a missing folder is reported by apply, which names the fix
        return {"student": content_hash(folder)}

    def preflight(self, teacher: dict[str, Any] | None) -> dict[str, Any] | None:
        """Refuse a student whose layers optbench cannot keep (nor, with `intermediate_size`, FFNs narrow), whose
        `layers` it lacks, or that would be deeper than its teacher, from its config.json: the teacher's with
        `student = "teacher"` (None: not known before the steps before this one run), the packaged student's, else
        the student folder's. Returns the student's config.json with the depth and sizes it keeps, what this step
        makes (see `optbench.preflight.check_step_inputs`)."""
        if self.student == PARAPHRASE_L3:
            student: dict[str, Any] | None = {"model_type": "bert", "num_hidden_layers": PARAPHRASE_L3_LAYERS}
        elif self.student == TEACHER:
            student = teacher
        else:
            folder = Path(self.student)
            if not folder.exists():  # read_hf_config's "give a folder, or 'default'" is the checkpoint's choice
                raise OptbenchError(
                    f"student = {toml_value(self.student)} is no folder: give {toml_value(TEACHER)}, "
                    f"{toml_value(PARAPHRASE_L3)} or a checkpoint "
                    f"folder (a relative path is taken from the recipe's folder)"
                    f"{did_you_mean([folder.name], (TEACHER, PARAPHRASE_L3))}"
                )
            student = read_hf_config(folder)
        if student is None:
            return None
        check_layer_list(student)
        depth = config_depth(student)
        if depth is None:
            return student
        if self.layers is not None:
            check_layers_within(self.layers, depth)
        teacher_depth = config_depth(teacher) if teacher is not None else None
        check_not_deeper(len(self.layers or range(depth)), teacher_depth)
        return self._student_made(student, depth)

    def _student_made(self, student: dict[str, Any], depth: int) -> dict[str, Any]:
        """The config.json of the student this step makes of one of `depth` layers whose config.json is `student`:
        the depth it keeps, the FFN width `narrow_ffn` records, and a pruned student's sizes of the layers kept (as
        `keep_layers` and `narrow_ffn` record them; sizes not of every layer are left out: known once it runs)."""
        kept = self.layers if self.layers is not None else range(depth)
        made = {**student, config_key(student, "num_hidden_layers"): len(kept)}
        if self.intermediate_size is not None:
            made[config_key(student, "intermediate_size")] = self.intermediate_size
        for key in ("heads_per_layer", "intermediate_per_layer"):
            sizes = made.pop(key, None)
            if isinstance(sizes, list) and len(sizes) == depth:
                made[key] = [sizes[i] for i in kept]
        if self.intermediate_size is not None and "intermediate_per_layer" in made:
            made["intermediate_per_layer"] = [min(n, self.intermediate_size) for n in made["intermediate_per_layer"]]
        return made

    def resolve_paths(self, base: Path) -> DistillConfig:
        """A student folder given in a recipe is taken from the recipe's folder."""
        if self.student in (TEACHER, PARAPHRASE_L3):
            return self
        return replace(self, student=recipe_path(base, self.student, "student"))


def apply(config: DistillConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Distill `artifact` (the teacher) into the configured student and save it to `out_dir`."""
    import torch

    from optbench.pruned_bert import save_classifier

    check_step_input(config, artifact)
    torch.manual_seed(config.seed)
    student, tokenizer, origin = build_student(config, artifact)  # first: a bad student fails fast
    if config.attention_weight:
        without_attention_dropout(student)
    teacher = _teacher_for_transfer(config, artifact, student, tokenizer)
    cache = out_dir.parent / "teacher-logits"  # a step's work folder lives in the cache folder
    logits = teacher_logits(artifact, data.train, config.max_length, cache)  # loading draws no random numbers
    train_split = data.train
    # the teacher's depth from its config: an ALBERT teacher has no layer list to count, and returns one
    # hidden state per layer all the same
    mapping = layer_mapping(len(encoder_layers(student)), teacher.config.num_hidden_layers) if teacher else []
    teacher_inputs = model_input_names(teacher) if teacher else ()

    def batch_loss(rows: np.ndarray) -> Any:
        inputs = encode_rows(student, tokenizer, train_split, rows, config.max_length)
        transfer = teacher is not None
        out = student(**inputs, output_hidden_states=transfer, output_attentions=config.attention_weight > 0)
        loss = config.logit_loss(out.logits, torch.from_numpy(logits[rows]), torch.from_numpy(train_split.labels[rows]))
        if transfer:
            with torch.no_grad():
                target = teacher(
                    **{k: v for k, v in inputs.items() if k in teacher_inputs},
                    output_hidden_states=True,
                    output_attentions=config.attention_weight > 0,
                )
            mask = inputs["attention_mask"]
            if config.hidden_weight:
                loss = loss + config.hidden_weight * hidden_state_loss(
                    out.hidden_states, target.hidden_states, mask, mapping
                )
            if config.attention_weight:
                loss = loss + config.attention_weight * attention_loss(out.attentions[-1], target.attentions[-1], mask)
        return loss

    run = train(student, config, len(train_split), batch_loss, desc="distill")
    validation = data.validation
    predicted = predictions(student, tokenizer, validation, config.max_length)
    teacher_predicted = teacher_logits(artifact, validation, config.max_length, cache).argmax(1)
    validation_accuracy = float((predicted == validation.labels).mean())
    log.info(
        "distilled %d rows in %.0f s into %d layers; validation accuracy %.4f (teacher %.4f)",
        run.rows,
        run.seconds,
        student.config.num_hidden_layers,
        validation_accuracy,
        float((teacher_predicted == validation.labels).mean()),
    )
    save_classifier(student, tokenizer, out_dir)
    details = {
        "student": origin,
        "num_layers": student.config.num_hidden_layers,
        **layer_shapes(student),  # per layer: a student of an unevenly pruned teacher has no one FFN width
        "parameters": sum(p.numel() for p in student.parameters()),
        "hidden_layer_mapping": mapping,
        "train_rows": run.rows,
        "train_seconds": run.seconds,
        "validation_accuracy": validation_accuracy,
        "validation_agreement_with_teacher": float((predicted == teacher_predicted).mean()),
    }
    return artifact.derive(out_dir, step=config.name, config=config_to_dict(config), format="hf", details=details)


def distillation_loss(
    student_logits: Any,
    teacher_logits: Any,
    labels: Any,
    *,
    temperature: float,
    distill_weight: float,
    label_weight: float,
) -> Any:
    """`distill_weight` x T^2 x KL(teacher || student) at temperature T, plus `label_weight` x
    cross-entropy on the labels (Hinton et al.; T^2 keeps the gradient scale independent of T)."""
    import torch.nn.functional as F

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits.float() / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return distill_weight * temperature**2 * soft + label_weight * F.cross_entropy(student_logits, labels)


def layer_mapping(student_layers: int, teacher_layers: int) -> list[int]:
    """For each student layer, the teacher layer whose output it learns to match: spread uniformly,
    the last to the last (TinyBERT's mapping), e.g. 3 of 6 -> [1, 3, 5]."""
    return [(i + 1) * teacher_layers // student_layers - 1 for i in range(student_layers)]


def hidden_state_loss(student_states: Any, teacher_states: Any, mask: Any, mapping: list[int]) -> Any:
    """Mean squared error between the student's layer outputs and the mapped teacher layers' (and the
    embeddings), over real tokens only."""
    pairs = [(student_states[0], teacher_states[0])]
    pairs += [(student_states[i + 1], teacher_states[t + 1]) for i, t in enumerate(mapping)]
    weight = mask.unsqueeze(-1).float()
    tokens = weight.sum() * student_states[0].shape[-1]
    return sum(((s - t) ** 2 * weight).sum() / tokens for s, t in pairs) / len(pairs)


def without_attention_dropout(model: Any) -> None:
    """No dropout on the last layer's attention probabilities, the attention transfer's subject: in train
    mode transformers returns them after dropout, zeroed and rescaled, and the KL would pull a student that
    matched its teacher away from it."""
    dropout = getattr(self_attention(model, encoder_layers(model)[-1]), "dropout", None)
    if dropout is None:
        raise OptbenchError(
            f"attention transfer needs BERT- or DistilBERT-style self-attention ({type(model).__name__}'s has "
            "no dropout to turn off): set attention_weight = 0"
        )
    dropout.p = 0.0


def attention_loss(student_attention: Any, teacher_attention: Any, mask: Any) -> Any:
    """KL divergence between the teacher's and the student's attention distributions of the last layer,
    per head and real query token (MiniLM's self-attention transfer)."""
    import torch

    if student_attention.shape != teacher_attention.shape:
        raise OptbenchError(
            f"attention transfer needs as many heads in student and teacher (attention shapes "
            f"{tuple(student_attention.shape)} and {tuple(teacher_attention.shape)}): set attention_weight = 0"
        )
    eps = 1e-8
    kl = (teacher_attention * (torch.log(teacher_attention + eps) - torch.log(student_attention + eps))).sum(-1)
    queries = mask.unsqueeze(1).float().expand_as(kl)
    return (kl * queries).sum() / queries.sum()


def build_student(config: DistillConfig, teacher: ModelArtifact) -> tuple[Any, Any, dict[str, Any]]:
    """The untrained student classifier, its tokenizer, and a record of where it came from."""
    from transformers import BertForSequenceClassification

    from optbench.pruned_bert import load_classifier

    labels = list(teacher.label_names)
    attention = config.attention_implementation
    heads = head_config(labels)
    if config.student == TEACHER:
        model = load_classifier(teacher.path, **attention)
        tokenizer = load_tokenizer(teacher.path)
    elif config.student == PARAPHRASE_L3:
        encoder = paraphrase_l3_encoder()
        student_config = copy.deepcopy(encoder.config)
        student_config.update({**heads, "_attn_implementation": attention.get("attn_implementation", "sdpa")})
        model = BertForSequenceClassification(student_config)
        model.bert.load_state_dict(encoder.state_dict(), strict=False)  # the pooler stays freshly initialized
        tokenizer = default_tokenizer()
    else:
        folder = Path(config.student)
        check_student_labels(read_hf_config(folder), labels, f"student {folder}")
        model = load_classifier(folder, **attention, **heads)
        tokenizer = load_tokenizer(folder)
    initial_layers = len(encoder_layers(model))
    if config.layers is not None:
        keep_layers(model, config.layers)
    if config.intermediate_size is not None:
        narrow_ffn(model, config.intermediate_size)
    check_not_deeper(model.config.num_hidden_layers, config_depth(read_hf_config(teacher.path)))
    origin = {"init": config.student, "initial_layers": initial_layers, "kept_layers": list(config.layers or [])}
    return model, tokenizer, origin


def check_student_labels(student: dict[str, Any], teacher_labels: Sequence[str], name: str) -> None:
    """Refuse a student classifier (a head and its id2label; `student` is its config.json) whose labels are not its
    teacher's: it is trained on the teacher's. An encoder without a head gets a head of the teacher's labels."""
    labels = list(hf_label_names(student))
    if has_classifier_head(student) and labels != list(teacher_labels):
        differ = "in another order" if sorted(labels) == sorted(teacher_labels) else "the label sets differ"
        raise OptbenchError(
            f"{name} classifies {labels} and the teacher {list(teacher_labels)}: {differ}; give a "
            "student with the teacher's labels in its order, or an encoder without a head"
        )


def check_not_deeper(student_depth: int, teacher_depth: int | None) -> None:
    """Refuse a student of more layers than its teacher (of unknown depth: None, refused nothing)."""
    if teacher_depth is not None and student_depth > teacher_depth:
        raise OptbenchError(
            f"the student has {student_depth} layers and the teacher {teacher_depth}: a student must not be deeper "
            "than its teacher; choose fewer layers"
        )


def _teacher_for_transfer(config: DistillConfig, teacher: ModelArtifact, student: Any, tokenizer: Any) -> Any:
    """The teacher as a torch model when hidden-state or attention transfer needs its insides, else None.

    Transfer compares the two models token by token and unit by unit, so both must read the same
    tokens and have the same hidden size.
    """
    if not (config.hidden_weight or config.attention_weight):
        return None
    from transformers import AutoTokenizer

    from optbench.pruned_bert import load_classifier

    model = load_classifier(teacher.path, **config.attention_implementation).eval()
    same_tokens = AutoTokenizer.from_pretrained(teacher.path).get_vocab() == tokenizer.get_vocab()
    if not same_tokens or model.config.hidden_size != student.config.hidden_size:
        raise OptbenchError(
            f"hidden-state and attention transfer need the teacher's tokenizer and hidden size (teacher "
            f"{model.config.hidden_size}, student {student.config.hidden_size}, same vocabulary: {same_tokens}): "
            "set hidden_weight and attention_weight to 0 for this student"
        )
    return model


def teacher_logits(teacher: ModelArtifact, split: Split, max_length: int, cache: Path) -> np.ndarray:
    """The teacher's logits on every row of `split`, computed once per (teacher, texts, max length, torch and
    transformers versions) and cached as a .npy file; texts run in order of length so that batches carry little
    padding. The teacher runs on every usable core, and torch's thread count is put back after it."""
    import hashlib

    import torch

    # the libraries that run the teacher: a new release may compute other logits (the steps' keys hold them too)
    versions = [installed_version(name) for name in TrainingConfig.libraries]
    key = hashlib.sha256(json.dumps([split.texts, versions]).encode()).hexdigest()[:12]
    path = cache / f"{teacher.sha256[:16]}-{key}-{max_length}.npy"
    if path.is_file():
        log.info("teacher logits: reusing %s", path)
        return np.load(path, allow_pickle=False)
    threads = torch.get_num_threads()  # torch's runtime sets its own for the process
    try:  # on torch: distill and prune take checkpoints only, and the key holds torch's version
        runtime = load_runtime(RuntimeSpec("torch"), teacher, threads=usable_cores())
        tokenizer = load_tokenizer(teacher.path)
        order = np.argsort([len(t) for t in split.texts], kind="stable")
        logits = np.zeros((len(split), len(teacher.label_names)), dtype=np.float32)
        batches = range(0, len(order), TEACHER_BATCH_SIZE)
        with Progress(len(batches), "teacher logits", "batch", "batches", mininterval=2.0) as progress:
            for start in batches:
                rows = order[start : start + TEACHER_BATCH_SIZE]
                batch = encode(tokenizer, [split.texts[i] for i in rows], seq_len="data", max_length=max_length)
                logits[rows] = runtime.predict(batch)
                progress.advance()
    finally:
        torch.set_num_threads(threads)  # the training after it runs as it would with the logits cached
    write_npy_atomic(path, logits)
    return logits
