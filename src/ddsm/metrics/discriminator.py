"""Real-vs-designed discriminator: can a k-mer logistic regression tell the two sets apart?

Features are each sequence's k-mer frequencies for ``k in ks`` (default 1..4: 340 features for
DNA), standardised on the training fold. An L2-regularised logistic regression (fitted with
L-BFGS) is scored by stratified k-fold cross-validated AUROC on a balanced subsample:
0.5 = indistinguishable, 1.0 = perfectly separable.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .kmers import kmer_counts


def kmer_features(seqs: Sequence[str], ks: Sequence[int] = (1, 2, 3, 4), alphabet: str = "ACGT") -> np.ndarray:
    """Per-sequence k-mer frequencies for every ``k`` in ``ks``, concatenated.

    Returns:
        ``(N, sum(K**k))`` float64; each k block sums to 1 (or 0 for sequences shorter than k).
    """
    blocks = []
    for k in ks:
        c = kmer_counts(seqs, k, alphabet)
        total = c.sum(1, keepdims=True)
        blocks.append(np.divide(c, total, out=np.zeros_like(c), where=total > 0))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(seqs), 0))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count one half).

    Equal to the Mann-Whitney U statistic over ``n_pos * n_neg``; NaN without both classes.
    """
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_logistic(X: np.ndarray, y: np.ndarray, *, l2: float = 10.0, max_iter: int = 500) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression: minimise ``sum log-loss + l2/2 * |w|^2`` (bias free).

    Args:
        X: ``(N, D)`` features. y: ``(N,)`` 0/1 labels.

    Returns:
        weights ``(D,)`` and the bias.
    """
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sign = 2.0 * y - 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        margin = sign * (X @ w + b)
        loss = -log_expit(margin).sum() + 0.5 * l2 * (w @ w)
        g = -sign * expit(-margin)  # d loss / d logit
        return float(loss), np.concatenate([X.T @ g + l2 * w, [g.sum()]])

    from threadpoolctl import threadpool_limits

    # The products here are small (thousands x hundreds); with several BLAS threads on a busy
    # machine, OpenBLAS spends far longer waiting for its threads than computing (30x slower
    # measured), so one thread it is.
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(objective, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter})
    return res.x[:-1], float(res.x[-1])


def stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Test indices of ``n_folds`` folds, each class spread evenly (shuffled within class)."""
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        for i, j in enumerate(members):
            folds[i % n_folds].append(int(j))
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def discriminator_auroc(
    designed: Sequence[str],
    reference: Sequence[str],
    *,
    ks: Sequence[int] = (1, 2, 3, 4),
    n_folds: int = 5,
    max_per_set: int = 2000,
    l2: float = 10.0,
    seed: int = 0,
    alphabet: str = "ACGT",
) -> float:
    """Cross-validated AUROC of a k-mer logistic regression separating designed from reference.

    Both sets are subsampled to the same size ``n = min(len(designed), len(reference), max_per_set)``
    (balanced, so AUROC and chance level do not depend on the set sizes).

    Returns:
        mean AUROC over the folds (about 0.5 when the sets are indistinguishable); NaN when either
        set has fewer than ``n_folds`` sequences.
    """
    rng = np.random.default_rng(seed)
    n = min(len(designed), len(reference), max_per_set)
    if n < n_folds or n_folds < 2:
        return float("nan")
    d = [designed[i] for i in rng.choice(len(designed), n, replace=False)]
    r = [reference[i] for i in rng.choice(len(reference), n, replace=False)]
    X = kmer_features(d + r, ks, alphabet)
    y = np.r_[np.ones(n), np.zeros(n)]
    scores = []
    for test in stratified_folds(y, n_folds, rng):
        train = np.setdiff1d(np.arange(len(y)), test)
        mu, sd = X[train].mean(0), X[train].std(0)
        sd[sd == 0] = 1.0
        w, b = fit_logistic((X[train] - mu) / sd, y[train], l2=l2)
        scores.append(auroc((X[test] - mu) / sd @ w + b, y[test]))
    return float(np.mean(scores))


def predict_logistic(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """Probabilities of class 1 for ``(N, D)`` features."""
    from scipy.special import expit

    return expit(np.asarray(X) @ w + b)


__all__ = ["auroc", "discriminator_auroc", "fit_logistic", "kmer_features", "predict_logistic",
           "stratified_folds"]

