"""Time to the first Sudoku grid: load the bundled model, sample one grid, then a second.

    OMP_NUM_THREADS=1 python bench/sudoku_startup.py [--steps 100]

The first sample pays the one-off costs (lineage laws at the anchor times, stick tables); with the
shipped anchor table (``ddsm/special/anchor_table.py``) no multi-precision series is evaluated.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    t0 = time.perf_counter()
    from ddsm.sudoku.generate import generate_grids
    from ddsm.sudoku.model_io import load_sudoku_model

    sm = load_sudoku_model()
    t1 = time.perf_counter()
    generate_grids(sm, 1, steps=args.steps, generator=torch.Generator().manual_seed(0))
    t2 = time.perf_counter()
    generate_grids(sm, 1, steps=args.steps, generator=torch.Generator().manual_seed(0))
    t3 = time.perf_counter()
    print(f"import + load {t1 - t0:.1f} s; first grid {t2 - t1:.1f} s; second grid {t3 - t2:.1f} s "
          f"({args.steps} steps, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
