"""Diversity within a set and novelty against training data, by position-wise (Hamming) identity.

Identity of two sequences = matching positions / the longer length (no alignment: sequences are
compared position by position from the start; letters outside the alphabet never match). The
Hamming distance is ``1 - identity``. All-pairs identities are one-hot matrix products, done in
chunks so that memory stays bounded.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._encode import index_matrix, one_hot


def _one_hot_flat(seqs: Sequence[str], alphabet: str, length: int):
    import torch

    idx = index_matrix(seqs, alphabet, length)
    flat = one_hot(idx, len(alphabet)).reshape(len(seqs), -1)
    return torch.from_numpy(flat), torch.tensor([len(s) for s in seqs], dtype=torch.float32)


def identity_matrix(a: Sequence[str], b: Sequence[str], *, alphabet: str = "ACGT") -> np.ndarray:
    """``(len(a), len(b))`` position-wise identities in [0, 1] (small sets; see :func:`nearest_identity`)."""
    L = max([len(s) for s in a] + [len(s) for s in b] + [1])
    xa, la = _one_hot_flat(a, alphabet, L)
    xb, lb = _one_hot_flat(b, alphabet, L)
    denom = np.maximum(np.maximum.outer(la.numpy(), lb.numpy()), 1.0)
    return (xa @ xb.T).numpy() / denom


def mean_pairwise_hamming(
    seqs: Sequence[str], *, max_n: int = 1000, seed: int = 0, alphabet: str = "ACGT"
) -> float:
    """Mean normalised Hamming distance over all pairs ``i < j`` (a random ``max_n`` subsample).

    0 = all sequences identical; about 0.75 for independent uniform random DNA.
    """
    if len(seqs) < 2:
        return float("nan")
    if len(seqs) > max_n:
        rng = np.random.default_rng(seed)
        seqs = [seqs[i] for i in rng.choice(len(seqs), max_n, replace=False)]
    ident = identity_matrix(seqs, seqs, alphabet=alphabet)
    n = len(seqs)
    upper = ident[np.triu_indices(n, k=1)]
    return float(np.mean(1.0 - upper))


def nearest_identity(
    designed: Sequence[str],
    train: Sequence[str],
    *,
    alphabet: str = "ACGT",
    chunk: int = 4096,
    device=None,
) -> np.ndarray:
    """For each designed sequence, its highest identity to any training sequence.

    Args:
        designed: ``N`` sequences.
        train: ``M`` sequences (compared in chunks of ``chunk``).
        device: torch device for the products (default CPU).

    Returns:
        ``(N,)`` float64 in [0, 1]; 1.0 = an exact copy of a training sequence.
    """
    import torch

    if len(designed) == 0:
        return np.zeros(0)
    if len(train) == 0:
        return np.full(len(designed), np.nan)
    L = max(max(len(s) for s in designed), max(len(s) for s in train))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    xd, ld = _one_hot_flat(designed, alphabet, L)
    xd, ld = xd.to(dev), ld.to(dev)
    best = torch.zeros(len(designed), device=dev)
    for start in range(0, len(train), chunk):
        xt, lt = _one_hot_flat(train[start : start + chunk], alphabet, L)
        matches = xd @ xt.to(dev).T  # (N, chunk)
        denom = torch.maximum(ld[:, None], lt.to(dev)[None, :]).clamp(min=1.0)
        best = torch.maximum(best, (matches / denom).amax(1))
    return best.double().cpu().numpy()


def novelty_summary(
    designed: Sequence[str], train: Sequence[str], *, memorised_at: float = 0.9, **options
) -> dict[str, float]:
    """``nearest_identity`` summarised: mean, and fraction of designs above ``memorised_at``."""
    best = nearest_identity(designed, train, **options)
    if best.size == 0 or np.isnan(best).all():
        return {"nearest_identity": float("nan"), "memorised_frac": float("nan")}
    return {"nearest_identity": float(np.mean(best)), "memorised_frac": float(np.mean(best > memorised_at))}


__all__ = ["identity_matrix", "mean_pairwise_hamming", "nearest_identity", "novelty_summary"]

