"""Sudoku: boards, rules, a grid generator, a structured denoiser and solvers.

Modules (one concept each):

- ``board``: layout, parsing/formatting, validity (rows, columns, boxes);
- ``symmetry``: validity-preserving board transformations;
- ``search``: bitmask depth-first search (exact solver fallback, grid generator engine);
- ``generator``: a stream of random valid grids for training;
- ``propagation``: batched naked/hidden singles on candidate tables;
- ``tables``: exact Jacobi stick statistics tabulated per time;
- ``process``: ``PosteriorJacobiProcess``, DDSM with a posterior-parameterised network;
- ``model``: ``SudokuDenoiser``, the digit-equivariant network;
- ``training``, ``model_io``: training on streamed grids, loading checkpoints (bundled default);
- ``generate``, ``constrained``, ``solve``: sampling grids, the constraint-aware sampler, solvers;
- ``csvio``, ``cli``: files and the ``ddsm sudoku`` commands.
"""

from .board import (
    BLANK,
    format_board,
    givens_conflict,
    is_solution,
    is_valid_grid,
    parse_board,
)
from .generator import GridStream, base_grids, random_grids
from .model import SudokuDenoiser
from .process import PosteriorJacobiProcess

__all__ = [
    "BLANK",
    "parse_board",
    "format_board",
    "is_valid_grid",
    "is_solution",
    "givens_conflict",
    "base_grids",
    "random_grids",
    "GridStream",
    "SudokuDenoiser",
    "PosteriorJacobiProcess",
]
