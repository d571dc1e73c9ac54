"""Computing the shipped lineage anchor table (``resources/lineage_anchors.npz``).

Kept apart from :mod:`ddsm.special.anchor_table` (which only reads the table) because it needs the
multi-precision series of :mod:`ddsm.special.lineage`, which itself reads the table: the three
modules then import in one direction, anchor_table <- lineage <- anchor_build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .anchor_table import TABLE, THETAS
from .lineage import _anchors, _series_mp


def build(thetas: tuple[int, ...] = THETAS) -> dict[str, np.ndarray]:
    """Compute every anchor law for ``thetas`` with the multi-precision series."""
    anchors = _anchors()
    laws = [[_series_mp(float(a), float(th)) for a in anchors] for th in thetas]
    width = max(len(v) for row in laws for _, v in row)
    values = np.zeros((len(thetas), len(anchors), width))
    starts = np.zeros((len(thetas), len(anchors)), dtype=np.int64)
    lengths = np.zeros_like(starts)
    for i, row in enumerate(laws):
        for j, (lo, v) in enumerate(row):
            starts[i, j], lengths[i, j] = lo, len(v)
            values[i, j, : len(v)] = v
    return {"thetas": np.asarray(thetas, dtype=np.int64), "anchors": anchors, "starts": starts,
            "lengths": lengths, "values": values}


def write(path: Path = TABLE) -> dict[str, np.ndarray]:
    """Build the table and write it to ``path`` atomically (temporary name, then rename)."""
    tab = build()
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **tab)
    tmp.replace(path)
    return tab
