"""Dinucleotide-preserving shuffles: the standard null model for sequence motifs.

A shuffle that keeps every overlapping letter pair count (and hence letter composition) destroys
motifs but not GC content or CpG depletion, so "real vs shuffled" measures what a model learned
beyond low-order statistics.

Method (Altschul & Erickson 1985; Kandel et al. 1996): read the sequence as an Eulerian path in the
multigraph whose vertices are letters and whose edges are the ``L - 1`` overlapping pairs. Every
Eulerian path from the first letter to the last is a sequence with the same pair counts, and each
such path is fixed by (1) which out-edge each vertex leaves by last, which must form a spanning
tree directed towards the final letter, and (2) the order of its other out-edges. Drawing (1)
uniformly over trees (Wilson's loop-erased random walk) and (2) uniformly over orders gives every
sequence with these pair counts the same probability.
"""

from __future__ import annotations

import numpy as np


def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A uniformly random sequence with the same overlapping letter-pair counts as ``seq``.

    The first and last letters are kept (they are fixed by the pair counts up to rotation).
    Works for any letters, not only nucleotides.

    Args:
        seq: the sequence (length ``L``); case-sensitive.
        rng: the source of randomness.

    Returns:
        a string of length ``L``.
    """
    if len(seq) <= 2:
        return seq
    # edges[a]: the letters that follow an `a`, one entry per occurrence (a multigraph).
    edges: dict[str, list[str]] = {}
    for a, b in zip(seq, seq[1:]):
        edges.setdefault(a, []).append(b)
    last = seq[-1]

    # (1) Wilson's algorithm: random walks to the growing tree, keeping for each vertex only the
    # edge it left by most recently; that erases loops, and the result is a uniform random tree
    # of edge copies directed towards `last`. Every vertex but `last` has out-edges (it is followed
    # by something in seq), so the walks always reach the tree.
    exit_index: dict[str, int] = {}
    in_tree = {last}
    for start in edges:
        v = start
        while v not in in_tree:
            exit_index[v] = int(rng.integers(len(edges[v])))
            v = edges[v][exit_index[v]]
        v = start
        while v not in in_tree:
            in_tree.add(v)
            v = edges[v][exit_index[v]]

    # (2) Leave each vertex by its other edges in random order, and by its tree edge last; the
    # tree edges guarantee the walk never strands itself before using every edge.
    order: dict[str, list[str]] = {}
    for v, out in edges.items():
        if v == last:
            order[v] = [out[i] for i in rng.permutation(len(out))]
        else:
            k = exit_index[v]
            rest = out[:k] + out[k + 1 :]
            order[v] = [rest[i] for i in rng.permutation(len(rest))] + [out[k]]

    used = dict.fromkeys(order, 0)
    letters = [seq[0]]
    v = seq[0]
    for _ in range(len(seq) - 1):
        nxt = order[v][used[v]]
        used[v] += 1
        letters.append(nxt)
        v = nxt
    return "".join(letters)
