"""Classification metrics from logits, and the paired accuracy drop of a variant.

Written with numpy alone so the accuracy pass needs no scikit-learn or scipy at runtime; the
tests check every figure against scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from statistics import NormalDist

import numpy as np

from optbench.errors import OptbenchError

_Z95 = NormalDist().inv_cdf(0.975)  # a two-sided 95% interval's normal quantile, 1.96


def _check(labels: object, logits: object, name: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """Labels as int (n,), logits as float64 (n, k), or OptbenchError naming what is wrong."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    if labels.ndim != 1:
        raise OptbenchError(f"labels must be 1-D (one per example), got shape {labels.shape}")
    if logits.ndim != 2:
        raise OptbenchError(f"{name} must be 2-D (examples, classes), got shape {logits.shape}")
    if labels.shape[0] != logits.shape[0]:
        raise OptbenchError(
            f"{labels.shape[0]} labels but {logits.shape[0]} rows of {name}; score the same examples that are labelled"
        )
    if labels.size == 0:
        raise OptbenchError("no examples to score: labels and logits are empty")
    if logits.shape[1] < 2:
        raise OptbenchError(f"{name} have {logits.shape[1]} class column(s); need at least 2")
    if not np.issubdtype(labels.dtype, np.integer):
        raise OptbenchError(f"labels must be integers, got dtype {labels.dtype}; map them to 0..k-1")
    k = logits.shape[1]
    bad = labels[(labels < 0) | (labels >= k)]
    if bad.size:
        raise OptbenchError(
            f"label {int(bad[0])} is outside [0, {k}) for {k}-class {name}; "
            "check the label mapping or the model's number of classes"
        )
    if not np.isfinite(logits).all():
        raise OptbenchError(f"{name} contain NaN or infinity; the model output is broken")
    return labels.astype(np.int64), logits


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row maximum keeps exp from overflowing."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, tied values sharing the mean of their ranks (scipy's 'average')."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    starts = np.flatnonzero(starts_group)
    # group g holds ranks starts[g] + 1 .. ends[g]
    ends = np.append(starts[1:], x.size)
    ranks = np.empty(x.size)
    ranks[order] = ((starts + 1 + ends) / 2)[np.cumsum(starts_group) - 1]
    return ranks


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney U of the positives' ranks over n_pos * n_neg."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    u = _average_ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per class, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


@dataclass(frozen=True)
class Metrics:
    """Classification quality over n examples; precision, recall and F1 are macro averages over the
    classes in the labels or the predictions (scikit-learn's default), so a labelled class the model never
    predicts counts as zero, and a class neither labelled nor predicted (absent from a test split or slice)
    is left out rather than counted as zero against a model that got everything right."""

    n: int
    accuracy: float
    macro_f1: float
    precision: float
    recall: float
    # binary: AUC of the class-1 score; k>2: macro one-vs-rest; None when a class is
    # absent from labels (its AUC is undefined)
    roc_auc: float | None

    @classmethod
    def from_logits(cls, labels: np.ndarray, logits: np.ndarray) -> Metrics:
        """Metrics of the argmax predictions (labels int (n,), logits float (n, k))."""
        labels, logits = _check(labels, logits)
        k = logits.shape[1]
        preds = logits.argmax(axis=1)
        confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
        true_pos = np.diag(confusion).astype(np.float64)
        predicted = confusion.sum(axis=0)
        actual = confusion.sum(axis=1)
        seen = (predicted + actual) > 0
        roc_auc = None
        if (actual > 0).all():
            if k == 2:
                # the logit margin ranks like softmax(logits)[:, 1] but never saturates into ties
                roc_auc = _auc(labels == 1, logits[:, 1] - logits[:, 0])
            else:
                probs = softmax(logits)
                roc_auc = float(np.mean([_auc(labels == c, probs[:, c]) for c in range(k)]))
        return cls(
            n=int(labels.size),
            accuracy=float(true_pos.sum() / labels.size),
            macro_f1=float(_ratio(2 * true_pos, predicted + actual)[seen].mean()),
            precision=float(_ratio(true_pos, predicted)[seen].mean()),
            recall=float(_ratio(true_pos, actual)[seen].mean()),
            roc_auc=roc_auc,
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return {
            "n": int(self.n),
            "accuracy": float(self.accuracy),
            "macro_f1": float(self.macro_f1),
            "precision": float(self.precision),
            "recall": float(self.recall),
            "roc_auc": None if self.roc_auc is None else float(self.roc_auc),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Metrics:
        """Inverse of `to_dict`; a record with missing fields is refused by name."""
        _require(cls, d, "metrics")
        return cls(
            n=int(d["n"]),
            accuracy=float(d["accuracy"]),
            macro_f1=float(d["macro_f1"]),
            precision=float(d["precision"]),
            recall=float(d["recall"]),
            roc_auc=None if d["roc_auc"] is None else float(d["roc_auc"]),
        )


def _tango_z(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for a paired difference `delta` of n pairs, b of them (1, 0) and c (0, 1):
    (b - c - n delta) / sqrt(n (2 q + delta (1 - delta))), q the (0, 1) cell's probability that maximizes
    the multinomial likelihood given the difference, the root of 2n q^2 + B q + C = 0 (Tango 1998)."""
    B = -b - c + (2 * n - b + c) * delta
    C = -c * delta * (1 - delta)
    root = math.sqrt(max(B * B - 8 * n * C, 0.0))
    q = (root - B) / (4 * n) if B <= 0 else -2 * C / (B + root)  # the form that does not cancel
    return (b - c - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


def _bisect(f: Callable[[float], float], low: float, high: float) -> float:
    """The root of a decreasing f between low (where f > 0) and high (f < 0), to the last bit."""
    while (middle := (low + high) / 2) not in (low, high):
        low, high = (middle, high) if f(middle) > 0 else (low, middle)
    return middle


def _tango_interval(b: int, c: int, n: int) -> tuple[float, float]:
    """Tango's score 95% interval of the difference (b - c) / n between two proportions measured on the
    same n pairs, b pairs right on the first only and c on the second only (Tango 1998, Statistics in
    Medicine 17:891-908): the differences the score test at 5% does not reject. Unlike a bootstrap of the
    pairs it has width without discordant pairs (b = c = 0 gives +-z^2 / (n + z^2), about +-3.84 / n) and
    stays in [-1, 1]. It is approximate: its exact coverage averages 95% but dips to about 93.5% at some rates
    of disagreement (README, How it measures). Solved with b >= c and mirrored otherwise: near a difference of -1
    the variance's terms 2 q and delta (1 - delta) cancel, and the bounds of b >= c stay clear of it."""
    if c > b:
        low, high = _tango_interval(c, b, n)
        return -high, -low
    estimate = (b - c) / n
    low = _bisect(lambda d: _tango_z(b, c, n, d) - _Z95, -1.0, estimate)
    high = 1.0 if b == n else _bisect(lambda d: _tango_z(b, c, n, d) + _Z95, estimate, 1.0)
    return low, high


@dataclass(frozen=True)
class Drop:
    """Accuracy drop of a variant against the reference on the same examples, in percentage points
    (reference minus variant, positive when the variant is worse), with Tango's paired score 95% CI,
    and the share of examples where both predict the same class (agreement, a fraction)."""

    points: float
    ci_low: float
    ci_high: float
    agreement: float

    @classmethod
    def of_reference(cls) -> Drop:
        """The reference's drop against itself: zero and certain, as it is one model, not two that agreed."""
        return cls(points=0.0, ci_low=0.0, ci_high=0.0, agreement=1.0)

    @classmethod
    def paired(cls, labels: np.ndarray, reference_logits: np.ndarray, variant_logits: np.ndarray) -> Drop:
        """The CI counts only the examples one model gets right and the other wrong, which is far tighter
        than two independent CIs; when there are none it still says how much n examples can vouch for."""
        labels, reference = _check(labels, reference_logits, "reference_logits")
        _, variant = _check(labels, variant_logits, "variant_logits")
        if reference.shape != variant.shape:
            raise OptbenchError(
                f"reference_logits {reference.shape} and variant_logits {variant.shape} differ "
                "in shape; score both models on the same examples with the same label set"
            )
        ref_pred = reference.argmax(axis=1)
        var_pred = variant.argmax(axis=1)
        ref_right, var_right = ref_pred == labels, var_pred == labels
        b, c, n = int(np.sum(ref_right & ~var_right)), int(np.sum(~ref_right & var_right)), labels.size
        low, high = _tango_interval(b, c, n)
        return cls(
            points=100 * (b - c) / n,
            ci_low=100 * low,
            ci_high=100 * high,
            agreement=float(np.mean(ref_pred == var_pred)),
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Drop:
        """Inverse of `to_dict`; a record with missing fields is refused by name."""
        _require(cls, d, "accuracy drop")
        return cls(**{f.name: float(d[f.name]) for f in fields(cls)})


def _require(cls: type, d: Mapping[str, object], what: str) -> None:
    """Refuse a stored record that lacks any of the dataclass's fields, naming them."""
    missing = [f.name for f in fields(cls) if f.name not in d]
    if missing:
        raise OptbenchError(f"{what} record lacks {', '.join(missing)}; re-run the measurement or repair the file")
