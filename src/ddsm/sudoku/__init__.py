"""Sudoku: boards, rules, a grid generator, a structured denoiser and solvers.

Modules (one concept each):

- ``board``: layout, parsing/formatting, validity (rows, columns, boxes);
- ``symmetry``: validity-preserving board transformations;
- ``search``: bitmask depth-first search (exact solver fallback, grid generator engine);
- ``generator``: a stream of random valid grids for training;
- ``propagation``: batched naked/hidden singles on candidate tables;
- ``process``: Sudoku's settings of the registered ``jacobi`` process (DDSM, posterior output),
  and the upgrade of checkpoints of the former Sudoku-only process;
- ``SudokuDenoiser`` (``ddsm.models.sudoku_grid``, the ``sudoku`` entry of ``ddsm.models.TASK_MODELS``): the
  digit-equivariant network (optionally with recurrent rounds);
- ``uniformity``: symmetry-invariant statistics telling a biased grid generator from a fair one;
- ``training``, ``model_io``: the training recipe (``ddsm sudoku train``), loading checkpoints (bundled default);
- ``generate``, ``constrained``, ``solve``: sampling grids, the constraint-aware sampler, solvers;
- ``csvio``: files (the ``ddsm sudoku`` commands live in the CLI package, module ``sudoku``).
"""

from importlib import import_module
from typing import Any

# name -> module; imported on first use so that ``ddsm --help`` does not pay for torch-heavy
# modules (the CLI's ``ddsm sudoku`` imports submodules of this package)
_EXPORTS = {
    "BLANK": "board",
    "parse_board": "board",
    "format_board": "board",
    "is_valid_grid": "board",
    "is_solution": "board",
    "givens_conflict": "board",
    "base_grids": "generator",
    "random_grids": "generator",
    "GridStream": "generator",
    "SudokuDenoiser": "ddsm.models.sudoku_grid",
    "sudoku_process": "process",
    "load_sudoku_model": "model_io",
    "SolveConfig": "solve",
    "solve_puzzles": "solve",
    "solve_givens_only": "solve",
    "generate_grids": "generate",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        where = _EXPORTS[name]  # a module of this package, or an absolute name
        return getattr(import_module(where if "." in where else f".{where}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
