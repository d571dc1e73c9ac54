"""The multi-precision lineage laws at the anchor times, tabulated once and shipped with ddsm.

``lineage._propagated`` starts every time in [T_NORMAL, T_FLOAT64) from the exact law at an anchor
time, computed by the alternating series in multi-precision arithmetic: about a second per anchor,
so 10-60 s before the first sample of a K = 9 (Sudoku) or larger model. Those laws depend only on
theta = a + b and the anchor time, and every process here uses integer theta (a = 1,
b = K - 1 - i), so they are computed once by this module and stored in
``resources/lineage_anchors.npz`` (float64; plain arrays, loaded with ``allow_pickle=False``).
Other theta values are computed on demand as before. This module only reads the table, so that
``lineage`` can import it; ``ddsm.special.anchor_build`` computes it. Regenerate with

    python bench/make_lineage_anchors.py          # writes src/ddsm/resources/lineage_anchors.npz

``tests/unit/test_lineage.py`` recomputes entries and requires them to be identical.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

TABLE = Path(__file__).resolve().parent.parent / "resources" / "lineage_anchors.npz"
THETAS = tuple(range(2, 66))  # K up to 65 (character-level text); theta = K - i for stick i


@lru_cache(maxsize=1)
def _table() -> Optional[dict[str, np.ndarray]]:
    if not TABLE.is_file():
        return None
    with np.load(TABLE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def lookup(anchor: int, anchor_time: float, theta: float) -> Optional[tuple[int, tuple[float, ...]]]:
    """The tabulated ``(m_start, weights)`` of anchor number ``anchor`` for ``theta``, or None."""
    tab = _table()
    if tab is None or float(theta) != round(theta):
        return None
    hit = np.flatnonzero(tab["thetas"] == int(round(theta)))
    if len(hit) == 0 or anchor >= len(tab["anchors"]) or tab["anchors"][anchor] != anchor_time:
        return None
    i = int(hit[0])
    n = int(tab["lengths"][i, anchor])
    return int(tab["starts"][i, anchor]), tuple(float(v) for v in tab["values"][i, anchor, :n])
