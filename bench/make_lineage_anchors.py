"""Regenerate the shipped lineage anchor laws (``src/ddsm/resources/lineage_anchors.npz``).

    python bench/make_lineage_anchors.py [OUT.npz]

Evaluates the multi-precision series at every anchor time for theta 2..65 (a few minutes on one
core); see ``ddsm/special/anchor_table.py`` and ``ddsm/special/anchor_build.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ddsm.special import anchor_build, anchor_table


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else anchor_table.TABLE
    tab = anchor_build.write(out)
    print(f"wrote {out}: {len(tab['thetas'])} theta values x {len(tab['anchors'])} anchors, "
          f"{out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
