"""Metrics against scikit-learn, the paired drop, and input validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optbench.accuracy import Drop, Metrics, softmax
from optbench.errors import OptbenchError

metrics = pytest.importorskip("sklearn.metrics")


def _sklearn(labels: np.ndarray, logits: np.ndarray) -> dict:
    k = logits.shape[1]
    preds = logits.argmax(axis=1)
    kw = {"average": "macro", "zero_division": 0}  # over the classes labelled or predicted
    probs = softmax(logits)
    if k == 2:
        auc = metrics.roc_auc_score(labels, probs[:, 1])
    else:
        auc = metrics.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    return {
        "accuracy": metrics.accuracy_score(labels, preds),
        "macro_f1": metrics.f1_score(labels, preds, **kw),
        "precision": metrics.precision_score(labels, preds, **kw),
        "recall": metrics.recall_score(labels, preds, **kw),
        "roc_auc": auc,
    }


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_sklearn(k: int, ties: bool) -> None:
    rng = np.random.default_rng(k)
    labels = rng.integers(0, k, size=400)
    if ties:  # few distinct logit rows: many tied scores and tied argmaxes
        logits = rng.integers(0, 3, size=(400, k)).astype(float)
    else:
        logits = rng.normal(size=(400, k)) + np.eye(k)[labels]
    got = Metrics.from_logits(labels, logits)
    assert got.n == 400
    for name, want in _sklearn(labels, logits).items():
        assert getattr(got, name) == pytest.approx(want, abs=1e-12), name


def test_class_never_predicted_counts_as_zero_precision() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    logits = np.zeros((60, 3))
    logits[:, 0] = 1.0 + rng.random(60)  # always class 0
    got = Metrics.from_logits(labels, logits)
    want = _sklearn(labels, logits)
    for name in ("precision", "recall", "macro_f1"):
        assert getattr(got, name) == pytest.approx(want[name]), name


@pytest.mark.parametrize(
    ("labels", "predicted"),
    [
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # a one-class slice, all right: 1.0, not 0.5
        ([0, 1, 0, 1], [0, 1, 0, 1]),  # class 2 of 3 neither labelled nor predicted
        ([0, 1, 0, 1], [0, 2, 0, 1]),  # class 2 predicted but never labelled: it counts as zero
    ],
)
def test_macro_averages_leave_out_classes_neither_labelled_nor_predicted(
    labels: list[int], predicted: list[int]
) -> None:
    got = Metrics.from_logits(np.array(labels), np.eye(3)[predicted] * 5.0)
    kw = {"average": "macro", "zero_division": 0}
    assert got.macro_f1 == pytest.approx(metrics.f1_score(labels, predicted, **kw))
    assert got.precision == pytest.approx(metrics.precision_score(labels, predicted, **kw))
    assert got.recall == pytest.approx(metrics.recall_score(labels, predicted, **kw))
    if labels == predicted:
        assert (got.macro_f1, got.precision, got.recall) == (1.0, 1.0, 1.0)


def test_auc_is_none_when_a_class_is_absent_from_labels() -> None:
    labels = np.array([0, 0, 1, 1])
    assert Metrics.from_logits(labels, np.random.default_rng(0).normal(size=(4, 3))).roc_auc is None
    assert Metrics.from_logits(np.zeros(4, dtype=int), np.ones((4, 2))).roc_auc is None


def test_softmax_is_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [800.0, 799.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        probs = softmax(logits)
        got = Metrics.from_logits(np.array([0, 1, 0]), logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(probs).all()
    assert got.roc_auc == 1.0


def test_metrics_round_trip_through_json() -> None:
    labels = np.array([0, 1, 1, 0, 1])
    logits = np.random.default_rng(0).normal(size=(5, 2))
    for m in (
        Metrics.from_logits(labels, logits),
        Metrics.from_logits(labels, logits[:, ::-1]),
    ):
        assert Metrics.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    absent = Metrics.from_logits(np.zeros(3, dtype=int), np.ones((3, 2)))
    assert Metrics.from_dict(json.loads(json.dumps(absent.to_dict()))) == absent


@pytest.mark.parametrize(
    ("labels", "logits", "match"),
    [
        (np.array([0, 1]), np.zeros((3, 2)), "2 labels but 3 rows"),
        (np.array([], dtype=int), np.zeros((0, 2)), "no examples"),
        (np.array([0, 2]), np.zeros((2, 2)), "label 2 is outside"),
        (np.array([-1, 0]), np.zeros((2, 2)), "label -1 is outside"),
        (np.array([0, 1]), np.zeros(2), "2-D"),
        (np.array([[0, 1]]), np.zeros((1, 2)), "1-D"),
        (np.array([0.0, 1.0]), np.zeros((2, 2)), "integers"),
        (np.array([0, 0]), np.zeros((2, 1)), "at least 2"),
        (np.array([0, 1]), np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN"),
    ],
)
def test_bad_inputs_raise(labels: np.ndarray, logits: np.ndarray, match: str) -> None:
    with pytest.raises(OptbenchError, match=match):
        Metrics.from_logits(labels, logits)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, size=500)
    logits = rng.normal(size=(500, 2)) + 1.5 * np.eye(2)[labels]
    return labels, logits


def test_drop_of_identical_logits_is_zero(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, logits = data
    drop = Drop.paired(labels, logits, logits.copy())
    assert (drop.points, drop.ci_low, drop.ci_high, drop.agreement) == (
        0.0,
        0.0,
        0.0,
        1.0,
    )


def test_drop_is_positive_when_variant_is_worse(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    labels, reference = data
    variant = reference + np.random.default_rng(1).normal(scale=2.0, size=reference.shape)
    drop = Drop.paired(labels, reference, variant)
    ref_acc = Metrics.from_logits(labels, reference).accuracy
    var_acc = Metrics.from_logits(labels, variant).accuracy
    assert var_acc < ref_acc
    assert drop.points == pytest.approx(100 * (ref_acc - var_acc))
    assert 0 < drop.ci_low <= drop.points <= drop.ci_high
    reverse = Drop.paired(labels, variant, reference)
    assert reverse.points == pytest.approx(-drop.points)
    assert reverse.agreement == drop.agreement


def test_drop_agreement_counts_same_predictions() -> None:
    labels = np.zeros(100, dtype=int)
    reference = np.tile([1.0, 0.0], (100, 1))
    variant = reference.copy()
    variant[:10] = [0.0, 1.0]
    drop = Drop.paired(labels, reference, variant, resamples=200)
    assert drop.agreement == pytest.approx(0.9)
    assert drop.points == pytest.approx(10.0)


def test_drop_is_seeded_and_round_trips(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, reference = data
    variant = reference + np.random.default_rng(3).normal(size=reference.shape)
    drop = Drop.paired(labels, reference, variant, seed=2)
    assert Drop.paired(labels, reference, variant, seed=2) == drop
    assert Drop.from_dict(json.loads(json.dumps(drop.to_dict()))) == drop
    with pytest.raises(OptbenchError, match="agreement"):
        Drop.from_dict({"points": 1.0, "ci_low": 0.0, "ci_high": 2.0})


def test_drop_rejects_logits_of_different_class_counts() -> None:
    labels = np.array([0, 1, 1])
    with pytest.raises(OptbenchError, match="differ"):
        Drop.paired(labels, np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(OptbenchError, match="variant_logits"):
        Drop.paired(labels, np.zeros((3, 2)), np.zeros((4, 2)))
