"""Solving puzzles with the diffusion model: DDSM's givens-only sampler, the constraint-aware
sampler with particles and restarts, and an exact search fallback.

``solve_puzzles`` runs, per batch of puzzles:

1. constraint propagation of the givens (naked and hidden singles, then failed-literal probing of
   cells with at most ``probe`` candidates, ``propagation.probe``). Puzzles it completes are
   answered by ``"propagation"``; a contradiction means the puzzle has no solution.
2. rounds of the constraint-aware sampler (``ddsm.sudoku.constrained``): every unsolved puzzle gets
   ``particles`` boards per round, each on the puzzle under a random board symmetry (the i-th
   board uses the i-th rotation/reflection of the square, plus a random relabelling and row/column
   shuffle), mapped back afterwards; the first valid one answers (``"constraint-aware"``). A
   puzzle's boards run together and all stop when one finishes; a board ruled out by the rules
   goes back a few steps, drops the digits the rules show it got wrong, and draws new noise from
   there (``on_dead="rewind"``), or becomes a copy of a living one (``"copy"``). Each board's
   table is propagated (and probed) whenever the sampler commits cells, so a wrong commitment
   dies within a step and a right one fills in what the rules then force. Rounds repeat
   until every puzzle is solved or has spent its ``budget``: network calls worth ``budget`` full
   sampling runs.
3. optionally (``search=True``), depth-first search with constraint checks for what is left, trying
   digits in the order of the particles' votes (``"search"``).

``solve_givens_only`` is DDSM's original method: givens imposed on the state during sampling
(``FixedPositions``), one run, decoded without any rule.

Per-puzzle ``seconds`` split each batched step's wall time evenly over the puzzles in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

from ..sampling import FixedPositions, sample
from .board import N_CELLS, N_DIGITS, conflict_cells, is_solution
from .constrained import constrained_sample, run_length
from .model_io import SudokuModel
from .propagation import candidates, fixed_digits, probe, propagate
from .search import backtrack
from .symmetry import Symmetry, dihedral, random_symmetries

PROPAGATION, CONSTRAINED, SEARCH, GIVENS_ONLY, UNSOLVED = (
    "propagation", "constraint-aware", "search", "givens-only", "unsolved")


@dataclass
class SolveConfig:
    """Options of :func:`solve_puzzles`.

    Attributes:
        steps: base steps of each sampling run; dilation: DDSM time dilation (>= 1).
        particles: samples per unsolved puzzle per round.
        budget: most network evaluations per puzzle, in full sampling runs (``steps * dilation``
            evaluations each); rewinds and early finishes make a run cost more or less.
        batch_size: boards per network call (None: by device, ``SudokuModel.batch_size``).
        mode: how the sampler narrows candidates during sampling (``ddsm.sudoku.constrained``):
            "propagate" (commit settled cells and propagate), "peers" or "static".
        on_dead: what a particle ruled out by the rules does: "rewind", "copy" or "drop"
            (``ddsm.sudoku.constrained``); rewind: steps of its first rewind; learn: a rewinding
            particle's table loses the digits whose failure the rules can show alone.
        probe: failed-literal probing of cells with at most this many candidates, of the givens
            and of every table the sampler commits to (0: singles only). Probing is what lets the
            sampler finish the forum's hardest puzzles: a depth-first search with every cell
            probed at each node needs a median of 3.5 nodes on them, against 80.5 with singles
            (first 30; ``bench/sudoku_probe.py``).
        search: fall back to exact search after the budget.
        search_nodes: node limit of that search per puzzle.
    """

    steps: int = 20
    dilation: float = 1.0
    particles: int = 1
    budget: int = 16
    batch_size: Optional[int] = None
    mode: str = "propagate"
    on_dead: str = "rewind"
    rewind: int = 2
    learn: bool = True
    probe: int = 9
    search: bool = True
    search_nodes: int = 2_000_000


@dataclass
class SolveResult:
    """Per puzzle: ``solutions (N, 81)`` long (for an unsolved puzzle the sampled board with the
    fewest clashing cells, or -1 where none was drawn), ``valid (N,)`` bool, ``solver``,
    ``samples_used (N,)`` long (network evaluations in full sampling runs, rounded up), ``seconds
    (N,)`` float64 (all stages), ``search_seconds (N,)`` float64 (the part spent in the exact
    search), ``note`` (why unsolved, else "")."""

    solutions: Tensor
    valid: Tensor
    solver: list[str]
    samples_used: Tensor
    seconds: Tensor
    search_seconds: Tensor
    note: list[str] = field(default_factory=list)


def _symmetries(n: int, first: int, generator: Optional[torch.Generator]) -> Symmetry:
    """``n`` particle symmetries: dihedral element (first + j) % 8 composed with a random
    relabelling and row/column shuffle."""
    d = dihedral((first + torch.arange(n)) % 8)
    r = random_symmetries(n, generator=generator, transpose=False)
    # apply d then r: new[j] = r.digit[ (d then r cells) ]
    cells = torch.gather(d.cell_perm, 1, r.cell_perm)
    return Symmetry(cells, r.digit_perm)


#: boards sampled together, in network batches: as the live boards of a run thin out, a pool of
#: several batches keeps the network calls fuller than one batch would (forum_hardest first 100,
#: 2 threads: 1.22 s per puzzle at 1 batch, see README). The pool's histories (its boards' states
#: at every step, for rewinds) are what bounds it.
POOL_BATCHES = 8


def _chunks(per: Tensor, batch_size: int) -> list[slice]:
    """Slices of the particle list (``per[i]`` consecutive particles for puzzle i) holding whole
    puzzles, about ``batch_size`` particles each, so a puzzle's particles share one sampling run."""
    out, lo, hi = [], 0, 0
    for n in per.tolist():
        hi += n
        if hi - lo >= batch_size:
            out.append(slice(lo, hi))
            lo = hi
    if hi > lo:
        out.append(slice(lo, hi))
    return out


@torch.no_grad()
def solve_puzzles(
    sm: SudokuModel,
    puzzles: Tensor,
    cfg: Optional[SolveConfig] = None,
    *,
    generator: Optional[torch.Generator] = None,
    on_round: Optional[Callable[[int, int], None]] = None,
) -> SolveResult:
    """Solve ``puzzles (N, 81)`` long (blanks -1; givens must not conflict).

    Args:
        cfg: the solver's options (None: ``SolveConfig()``, the defaults).
        on_round: called as ``on_round(samples_drawn, n_unsolved)`` after every round.
    """
    cfg = cfg or SolveConfig()
    N = puzzles.shape[0]
    sols = torch.full((N, N_CELLS), -1, dtype=torch.long)
    valid = torch.zeros(N, dtype=torch.bool)
    solver = [UNSOLVED] * N
    note = [""] * N
    secs = torch.zeros(N, dtype=torch.float64)
    search_secs = torch.zeros(N, dtype=torch.float64)

    t0 = time.perf_counter()
    cand, dead = probe(candidates(puzzles), cfg.probe) if cfg.probe else propagate(candidates(puzzles))
    secs += (time.perf_counter() - t0) / max(N, 1)
    for i in torch.nonzero(dead).flatten().tolist():
        note[i] = "no solution: the givens lead to a contradiction"
    done = (cand.sum(-1) == 1).all(-1) & ~dead
    sols[done] = fixed_digits(cand[done])
    for i in torch.nonzero(done).flatten().tolist():
        valid[i], solver[i] = True, PROPAGATION

    votes = torch.zeros(N, N_CELLS, N_DIGITS)
    best = torch.full((N,), N_CELLS + 1, dtype=torch.long)  # fewest clashing cells seen
    run = run_length(sm, cfg.steps, cfg.dilation)  # network evaluations of one full sampling run
    evals = torch.zeros(N, dtype=torch.long)
    rounds = 0
    while True:
        active = torch.nonzero(~valid & ~dead & (evals < cfg.budget * run)).flatten()
        if len(active) == 0:
            break
        t1 = time.perf_counter()
        before = evals[active].clone()
        per = torch.full((len(active),), cfg.particles, dtype=torch.long)
        owner = torch.repeat_interleave(active, per)
        sym = _symmetries(len(owner), rounds * cfg.particles, generator)
        allowed = sym.apply_candidates(cand[owner])
        left = (cfg.budget * run - evals)[owner]  # each particle carries its puzzle's remaining budget
        boards, frames = [], []
        batch = sm.batch_size(cfg.batch_size)
        for sl in _chunks(per, POOL_BATCHES * batch):
            out = constrained_sample(sm, allowed[sl], steps=cfg.steps, dilation=cfg.dilation, mode=cfg.mode,
                                     group=owner[sl], on_dead=cfg.on_dead, rewind=cfg.rewind, learn=cfg.learn,
                                     probe=cfg.probe, batch_size=batch, budget=left[sl], generator=generator)
            boards.append(out.boards)
            frames.append(out.frame + sl.start)
            evals.index_add_(0, owner[sl], out.evals)
        frame = torch.cat(frames)  # a copied board is in its donor's frame
        grids = Symmetry(sym.cell_perm[frame], sym.digit_perm[frame]).inverse().apply(torch.cat(boards))
        ok = is_solution(grids, puzzles[owner])
        clashes = conflict_cells(grids).sum(-1)
        votes.index_add_(0, owner, torch.nn.functional.one_hot(grids, N_DIGITS).float())
        for j in range(len(owner)):
            i = int(owner[j])
            if valid[i]:
                continue
            if bool(ok[j]):
                sols[i], valid[i], solver[i] = grids[j], True, CONSTRAINED
            elif int(clashes[j]) < int(best[i]):  # keep the best attempt to report
                sols[i], best[i] = grids[j], clashes[j]
        # a round that spent nothing (its particles all ended before a network call) still counts
        evals[active] = torch.maximum(evals[active], before + 1)
        share = (time.perf_counter() - t1) / len(owner)
        secs.index_add_(0, owner, torch.full((len(owner),), share, dtype=torch.float64))
        rounds += 1
        if on_round is not None:
            on_round(len(owner), int((~valid & ~dead).sum()))
    used = (evals + run - 1) // run

    if cfg.search:
        for i in torch.nonzero(~valid & ~dead).flatten().tolist():
            t2 = time.perf_counter()
            res = backtrack(puzzles[i].tolist(), preference=votes[i].tolist(), max_nodes=cfg.search_nodes)
            if res.grid is not None:
                sols[i], valid[i], solver[i] = torch.tensor(res.grid), True, SEARCH
            else:
                note[i] = "no solution found within the search limit" if res.nodes else "no solution"
            search_secs[i] = time.perf_counter() - t2
    secs += search_secs
    for i in range(N):
        if not valid[i] and not note[i]:
            note[i] = f"no valid sample in {int(used[i])} samples"
    return SolveResult(sols, valid, solver, used, secs, search_secs, note)


@torch.no_grad()
def solve_givens_only(
    sm: SudokuModel,
    puzzles: Tensor,
    *,
    steps: int = 100,
    dilation: float = 1.0,
    batch_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """DDSM's solver: one sampling run per puzzle with the givens imposed on the state.

    Returns:
        ``(boards (N, 81) long, valid (N,) bool)``; valid = a complete valid grid keeping the givens.
    """
    out = []
    batch_size = sm.batch_size(batch_size)
    for lo in range(0, puzzles.shape[0], batch_size):
        p = puzzles[lo : lo + batch_size]
        fixed = FixedPositions(p.clamp_min(0).to(sm.device), (p >= 0).to(sm.device))
        out.append(sample(sm.process, sm.model_fn, tuple(p.shape), steps=steps, dilation=dilation, fixed=fixed,
                          generator=generator, device=sm.device).cpu())
    boards = torch.cat(out)
    return boards, is_solution(boards, puzzles)
