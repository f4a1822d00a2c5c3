"""Metrics against scikit-learn, the paired drop and its interval, and input validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optbench.accuracy import Drop, Metrics, softmax
from optbench.errors import OptbenchError

metrics = pytest.importorskip("sklearn.metrics")
optimize = pytest.importorskip("scipy.optimize")
special = pytest.importorskip("scipy.special")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def _sklearn(labels: np.ndarray, logits: np.ndarray) -> dict:
    k = logits.shape[1]
    preds = logits.argmax(axis=1)
    kw = {"average": "macro", "zero_division": 0}  # over the classes labelled or predicted
    probs = special.softmax(logits, axis=1)
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


def test_softmax_matches_scipy_row_by_row() -> None:
    """Each row its own distribution: a shift by the column maximum instead of the row's changes the figures."""
    logits = np.random.default_rng(5).normal(scale=3.0, size=(50, 4)) + np.arange(50)[:, None]
    np.testing.assert_allclose(softmax(logits), special.softmax(logits, axis=1), rtol=1e-12)


def test_binary_auc_ranks_margins_that_softmax_would_saturate_into_a_tie() -> None:
    """Margins of 40 and 50 both round to a class-1 probability of exactly 1.0: the AUC is 1, not a tie's 0.5."""
    labels = np.array([0, 1])
    logits = np.array([[0.0, 40.0], [0.0, 50.0]])
    assert special.softmax(logits, axis=1)[0, 1] == special.softmax(logits, axis=1)[1, 1] == 1.0
    got = Metrics.from_logits(labels, logits)
    assert got.roc_auc == metrics.roc_auc_score(labels, logits[:, 1] - logits[:, 0]) == 1.0


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
        # the class count is the logits' columns, not their rows; the first label out of range is named
        (np.array([0, 1, 2]), np.zeros((3, 2)), r"label 2 is outside \[0, 2\) for 2-class logits"),
        (np.array([3, 0, -1]), np.zeros((3, 2)), "label 3 is outside"),
        (np.array([0, 1]), np.zeros(2), "2-D"),
        (np.array([[0, 1]]), np.zeros((1, 2)), "1-D"),
        (np.array([0.0, 1.0]), np.zeros((2, 2)), "integers"),
        (np.array([0, 0]), np.zeros((2, 1)), r"logits have 1 class column\(s\); need at least 2"),
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


def _pairs(b: int, c: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' logits on n examples: the first b right by the reference only, the next c by
    the variant only, the rest right by both."""
    labels, index = np.zeros(n, dtype=int), np.arange(n)
    ref_right, var_right = (index < b) | (index >= b + c), index >= b

    def logits(right: np.ndarray) -> np.ndarray:
        return np.where(right[:, None], [1.0, 0.0], [0.0, 1.0])

    return labels, logits(ref_right), logits(var_right)


def _score(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic at `delta`, with the probability of the variant-only cell that maximizes the
    multinomial likelihood given the difference found numerically (not by the module's closed form)."""

    def minus_log_likelihood(q: float) -> float:
        return -(b * np.log(q + delta) + c * np.log(q) + (n - b - c) * np.log(1 - 2 * q - delta))

    bounds = (max(0.0, -delta), (1 - delta) / 2)
    q = optimize.minimize_scalar(minus_log_likelihood, bounds=bounds, method="bounded", options={"xatol": 1e-13}).x
    return (b - c - n * delta) / np.sqrt(n * (2 * q + delta * (1 - delta)))


def test_drop_without_discordant_examples_still_has_an_interval() -> None:
    """Two models that agree on all n examples may disagree on others: the interval is about +-384 / n
    points (z^2 / (n + z^2) solves the score equation at b = c = 0), not [0, 0]."""
    widths = []
    for n in (20, 200, 2000):
        drop = Drop.paired(*_pairs(0, 0, n))
        assert (drop.points, drop.agreement) == (0.0, 1.0)
        bound = 100 * Z95**2 / (n + Z95**2)
        assert (drop.ci_low, drop.ci_high) == pytest.approx((-bound, bound))
        widths.append(drop.ci_high)
    assert widths[0] == pytest.approx(16.11, abs=0.01) and widths[2] == pytest.approx(384 / 2000, rel=0.01)


def test_the_reference_against_itself_is_certain() -> None:
    assert Drop.of_reference() == Drop(points=0.0, ci_low=0.0, ci_high=0.0, agreement=1.0)


@pytest.mark.parametrize(
    ("b", "c", "n"),
    # (0, 14, 31): the quadratic's discriminant falls below 1 near the bounds (a floor of 1 on it moved them 0.7 points)
    [(0, 0, 20), (1, 0, 20), (0, 1, 20), (3, 1, 20), (2, 3, 20), (6, 16, 161), (40, 20, 160), (0, 14, 31)],
)
def test_drop_interval_solves_tangos_score_equation(b: int, c: int, n: int) -> None:
    drop = Drop.paired(*_pairs(b, c, n))
    assert drop.points == pytest.approx(100 * (b - c) / n)
    assert -100 < drop.ci_low < drop.points < drop.ci_high < 100
    assert _score(b, c, n, drop.ci_low / 100) == pytest.approx(Z95, abs=1e-4)
    assert _score(b, c, n, drop.ci_high / 100) == pytest.approx(-Z95, abs=1e-4)


def test_drop_interval_matches_published_values() -> None:
    """Cavo et al. (2012): 6 and 16 discordant of 161 pairs; Tango's interval -0.1240 to -0.0054 in the
    companion R package of Fagerland, Lydersen & Laake's book (contingencytables, its chapter 8 tests).
    One pair, right by the reference only: Z = sqrt((1 - d) / (1 + d)) = 1.96 at d = (1 - z^2) / (1 + z^2)."""
    drop = Drop.paired(*_pairs(6, 16, 161))
    assert (drop.ci_low, drop.ci_high) == pytest.approx((-12.40, -0.54), abs=0.005)
    one = Drop.paired(*_pairs(1, 0, 1))
    assert (one.ci_low, one.ci_high) == (pytest.approx(100 * (1 - Z95**2) / (1 + Z95**2)), 100.0)


def test_drop_interval_at_the_ends_stays_within_100_points() -> None:
    everything = Drop.paired(*_pairs(5, 0, 5))  # the reference right everywhere, the variant nowhere
    assert 0 < everything.ci_low < everything.points == everything.ci_high == 100.0
    nothing = Drop.paired(*_pairs(0, 5, 5))
    assert -100.0 == nothing.ci_low == nothing.points < nothing.ci_high < 0
    assert (nothing.ci_low, nothing.ci_high) == pytest.approx((-everything.ci_high, -everything.ci_low))


def test_drop_interval_near_minus_100_points_is_exact_and_the_mirror_of_the_reverse() -> None:
    """A variant right alone on all but one of 100,000 rows: solved near a difference of -1, where the variance's
    terms 2 q and delta (1 - delta) cancel, the bounds were off by 2.5e-9 points (by 5% of the interval's width at
    10^8 rows) and unlike the reverse's. The bounds: the same score equation solved to 60 digits with mpmath."""
    exact = (-99.999823475226962169, -99.991317415896504656)
    drop = Drop.paired(*_pairs(0, 99_999, 100_000))
    reverse = Drop.paired(*_pairs(99_999, 0, 100_000))
    assert (drop.ci_low, drop.ci_high) == pytest.approx(exact, rel=0, abs=1e-11)
    assert (reverse.ci_low, reverse.ci_high) == pytest.approx((-exact[1], -exact[0]), rel=0, abs=1e-11)


def test_drop_interval_is_symmetric_for_symmetric_counts() -> None:
    drop = Drop.paired(*_pairs(3, 3, 20))
    assert drop.points == 0.0 and drop.ci_low == pytest.approx(-drop.ci_high, abs=1e-9) and drop.ci_high > 0
    forward, backward = Drop.paired(*_pairs(4, 1, 20)), Drop.paired(*_pairs(1, 4, 20))
    assert (backward.ci_low, backward.ci_high) == pytest.approx((-forward.ci_high, -forward.ci_low), abs=1e-9)


def test_drop_interval_is_close_to_walds_on_many_discordant_examples() -> None:
    b, c, n = 3000, 2000, 100_000
    drop = Drop.paired(*_pairs(b, c, n))
    half = 100 * Z95 * np.sqrt((b + c) / n - ((b - c) / n) ** 2) / np.sqrt(n)
    assert (drop.ci_low, drop.ci_high) == pytest.approx((drop.points - half, drop.points + half), abs=0.01 * half)


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
    drop = Drop.paired(labels, reference, variant)
    assert drop.agreement == pytest.approx(0.9)
    assert drop.points == pytest.approx(10.0)


def test_drop_agreement_counts_rows_both_models_get_wrong_alike() -> None:
    """Two models that predict the same wrong class on 10 of 100 rows agree on all 100 (agreement is on the class
    predicted, not on both being right): counting only the rows both get right gave 0.9, and the other agreement
    tests, whose models never shared a wrong answer, passed either way."""
    labels = np.zeros(100, dtype=int)
    reference = np.tile([1.0, 0.0], (100, 1))
    reference[:10] = [0.0, 1.0]
    drop = Drop.paired(labels, reference, reference.copy())
    assert (drop.agreement, drop.points) == (1.0, 0.0)


def test_drop_agreement_is_on_the_class_not_on_being_right() -> None:
    """Two models wrong on the same examples, with different classes, disagree there (3 classes)."""
    labels = np.zeros(100, dtype=int)
    reference = np.tile([1.0, 0.0, 0.0], (100, 1))
    reference[:10] = [0.0, 1.0, 0.0]
    variant = reference.copy()
    variant[:10] = [0.0, 0.0, 1.0]
    drop = Drop.paired(labels, reference, variant)
    assert drop.agreement == pytest.approx(0.9)
    assert drop.points == 0.0


def test_drop_round_trips(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, reference = data
    variant = reference + np.random.default_rng(3).normal(size=reference.shape)
    drop = Drop.paired(labels, reference, variant)
    assert Drop.from_dict(json.loads(json.dumps(drop.to_dict()))) == drop
    with pytest.raises(OptbenchError, match="agreement"):
        Drop.from_dict({"points": 1.0, "ci_low": 0.0, "ci_high": 2.0})


def test_drop_rejects_logits_of_different_class_counts() -> None:
    labels = np.array([0, 1, 1])
    with pytest.raises(OptbenchError, match="differ"):
        Drop.paired(labels, np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(OptbenchError, match="variant_logits"):
        Drop.paired(labels, np.zeros((3, 2)), np.zeros((4, 2)))
