"""Diffusion sampling of boards under the rules: the constraint-aware sampler.

The reverse SDE of the ``jacobi`` process (DDSM's Euler-Maruyama step, time dilation included)
with the network's posterior logits masked before the score is formed, so the sampler never
proposes an excluded digit. Each board carries a candidate table ``allowed (B, 81, 9)``:

- it starts as the givens plus what propagation deduced from them (a given cell allows only its
  digit, so givens are imposed exactly, with no resetting of their state);
- ``mode="peers"``: once a cell has *settled* (its own sticks sit at one digit's vertex: local
  posterior above ``settle``, 0.99 by default), that digit is excluded from its 20 peers;
- ``mode="propagate"`` (default): settled cells are committed to their digit and the table is
  propagated (naked and hidden singles) after every step, so forced cells follow at once. Here a
  cell settles as soon as its local posterior passes 1/2 (the least that names one digit): early
  commitments surface contradictions early, while they are cheap to undo. With ``probe`` the
  propagation also probes failed literals (``propagation.probe``), which finds a wrong commitment
  at once far more often and fills in more of a right one. A step's commitments can each survive
  probing and still clash together; then they are committed one at a time, most confident first,
  and the first that fails is removed from its cell instead (``_commit_in_turn``), so the board
  lives on. A board whose table leaves one digit per cell is finished early (it is then a valid
  grid);
- ``mode="static"``: only the starting table.

Excluded digits get posterior zero, so the mixture score drives each cell along the exact reverse
path of one of its allowed digits. Boards still running at the end are decoded by argmax of their
simplex point over their allowed digits. Validity is not guaranteed and must be checked.

A board whose table becomes contradictory cannot end valid. What it does then (``on_dead``):

- ``"rewind"`` (default): it goes back to its own state ``rewind`` steps earlier (twice as far at
  each further death, back to the prior at most) and draws new noise from there. With ``learn``
  its table there first loses every digit that the failed run had fixed and that, alone, leads
  that table to a contradiction under propagation (failed-literal probing: a deduction from the
  rules, so no solution is lost). The run then cannot repeat that mistake, and a long-lived board
  turns into a search guided by the network, each branch drawn by the reverse SDE. Commitments
  happen in a short stretch of the reverse time (with the bundled model, steps 15-24 of 50 on hard
  puzzles), so a rewind costs a few network calls where a fresh sample costs the whole run. On
  norvig_hardest11 plus the first 40 of norvig_top95 (8 particles, 50 steps, 16 runs' worth of
  network calls per puzzle): copies 24 / 51 solved, rewinds 25, rewinds with ``learn`` 40; with
  ``learn``, fewer and longer-lived particles do better still (1 particle, 30 steps: 50 / 51).
  A freshly initialised network does as well there (49 / 51; copies 24 / 51): on hard puzzles the
  solving comes from the rules and the search, not from the bundled model
  (``bench/sudoku_sampler.py --untrained``). (Those numbers are without probing. With it, tables
  are already free of failed literals, so ``learn`` rarely finds anything, and boards die far less
  often: on the first 100 of forum_hardest_1905_dev1000 a puzzle takes 1.07 runs' worth of network
  calls on average.);
- ``"copy"``: it becomes a copy of a random living board of its group (state, table, step and
  frame), which then diverges through the SDE's own noise, as in sequential Monte Carlo with a 0/1
  weight;
- ``"drop"``: it stops.

Boards of one puzzle (``group``) share a budget of network calls, and once one board of a group is
finished, the group's other boards stop. Boards of a group may sit in different frames (board
symmetries), so a copy records whose frame it is in (``frame``) for the caller to map it back.
Because boards rewind, each keeps its own step of the time grid; a network call takes boards at
different times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from .. import rng as _rng
from ..sampling.loop import dilated_pairs
from ..special.stick_posterior import category_loglik, mixture_score
from ..special.stickbreaking import sticks_to_simplex
from .board import N_CELLS
from .model_io import SudokuModel
from .propagation import eliminate, place, propagate
from .propagation import probe as probe_tables

MODES = ("static", "peers", "propagate")
ON_DEAD = ("rewind", "copy", "drop")


def _pairs(sm: SudokuModel, steps: int, dilation: float) -> list[tuple[Tensor, Tensor, float]]:
    """The ``(t, s, c)`` intervals one sampling run walks (``ddsm.sampling.loop.dilated_pairs``)."""
    return list(dilated_pairs(sm.process.time_grid(steps, device=sm.device), dilation, 1.0))


def run_length(sm: SudokuModel, steps: int, dilation: float) -> int:
    """Network evaluations of one board's full sampling run: ``steps`` times the dilation."""
    return len(_pairs(sm, steps, dilation))


def _narrow(allowed: Tensor, local: Tensor, mode: str, settle: float, stale: Tensor,
            probe: int = 0) -> tuple[Tensor, Tensor]:
    """Candidate tables after this step's settled cells; ``(allowed, dead)``. Tables are kept at
    the fixed point of propagation, so only those with new commitments, or marked ``stale (B,)``,
    are propagated again (most steps commit nothing)."""
    settled = (local > settle) & allowed  # (B, 81, 9) one digit at most per cell (settle >= 0.5)
    if mode == "peers":
        narrowed = eliminate(allowed, settled)
        # a peer's claim never empties a cell here: the clash shows in the final check
        return torch.where(narrowed.any(-1, keepdim=True), narrowed, allowed), torch.zeros(
            allowed.shape[0], dtype=torch.bool, device=allowed.device)
    committed = torch.where(settled.any(-1, keepdim=True), settled, allowed)
    redo = stale | (committed != allowed).flatten(1).any(-1)
    table, dead = allowed.clone(), torch.zeros_like(redo)
    if bool(redo.any()):
        narrowed = probe_tables(committed[redo], probe) if probe else propagate(committed[redo])
        table[redo], dead[redo] = narrowed
        if probe:
            # a step's commitments can each be sound and still clash together; rather than lose
            # the board, commit them one at a time, most confident first
            new = settled & (allowed.sum(-1, keepdim=True) > 1)
            retry = dead & new.flatten(1).any(-1)
            if bool(retry.any()):
                table[retry], dead[retry] = _commit_in_turn(allowed[retry], new[retry], local[retry], probe,
                                                            stale[retry])
    return table, dead


def _commit_in_turn(allowed: Tensor, new: Tensor, local: Tensor, probe: int,
                    stale: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Commit a step's new cells one at a time, in order of their local posterior, probing after
    each; the first that fails is removed from its cell instead, and the board stops committing for
    this step. Removing it is a deduction from the rules given the commitments before it (the
    board's table is always conditional on its own commitments), so the board lives on unless its
    table without any of this step's commitments is already a contradiction.

    Args:
        allowed: ``(n, 81, 9)`` tables before the step; new: ``(n, 81, 9)`` one-hot rows of the
            step's new commitments; local: ``(n, 81, 9)`` local posteriors (the order);
            stale: ``(n,)`` bool, tables not yet probed (None: all). The others are at the probing
            fixed point already (the sampler keeps them there), so they are not probed again.
    Returns:
        ``(table, dead)`` as ``propagate``.
    """
    table = allowed.clone()
    dead = torch.zeros(allowed.shape[0], dtype=torch.bool, device=allowed.device)
    redo = torch.ones_like(dead) if stale is None else stale
    if bool(redo.any()):
        table[redo], dead[redo] = probe_tables(allowed[redo], probe)
    has = new.any(-1)  # (n, 81)
    order = (local * new).amax(-1).masked_fill(~has, -1.0).argsort(-1, descending=True)
    count = has.sum(-1)
    active = ~dead
    for i in range(int(count.max())):
        rows = torch.nonzero(active & (count > i)).flatten()
        if len(rows) == 0:
            break
        cells = order[rows, i]
        digits = new[rows, cells].float().argmax(-1)
        open_ = table[rows, cells, digits] & (table[rows, cells].sum(-1) > 1)  # else nothing to commit
        rows, cells, digits = rows[open_], cells[open_], digits[open_]
        if len(rows) == 0:
            continue
        after, bad = probe_tables(place(table, rows, cells, digits), probe)
        table[rows[~bad]] = after[~bad]
        if bool(bad.any()):
            r = rows[bad]
            out = table[r].clone()
            out[torch.arange(len(r), device=table.device), cells[bad], digits[bad]] = False
            table[r], dead[r] = probe_tables(out, probe)
            active[r] = False
    return table, dead


@dataclass
class ConstrainedSamples:
    """Output of :func:`constrained_sample`.

    Attributes:
        boards: ``(B, 81)`` long, every digit allowed by the starting table of the board's frame.
        dead: ``(B,)`` bool: the rules ruled the board out (its board is a best guess, invalid).
        frame: ``(B,)`` long: the input board whose frame (symmetry and starting table) the board
            is in; itself unless it was replaced by a copy of another board of its group.
        evals: ``(B,)`` long network evaluations spent in each board's slot (one per step).
    """

    boards: Tensor
    dead: Tensor
    frame: Tensor
    evals: Tensor

    @property
    def board_steps(self) -> int:
        """Network evaluations spent in all: one per board per step."""
        return int(self.evals.sum())


@torch.no_grad()
def constrained_sample(
    sm: SudokuModel,
    allowed: Tensor,
    *,
    steps: int = 50,
    dilation: float = 1.0,
    mode: str = "propagate",
    settle: Optional[float] = None,
    group: Optional[Tensor] = None,
    on_dead: str = "rewind",
    rewind: int = 2,
    budget: Optional[Union[int, Tensor]] = None,
    learn: bool = True,
    probe: int = 0,
    batch_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> ConstrainedSamples:
    """Sample boards under candidate tables ``allowed (B, 81, 9)`` bool.

    Args:
        settle: local posterior above which a cell counts as settled (>= 0.5; None: 0.5 for
            "propagate", 0.99 for "peers").
        group: ``(B,)`` long puzzle id of each board (None: every board on its own). Needs a mode
            other than "static" (boards die or finish only when their tables narrow).
        on_dead: what a board ruled out by the rules does: "rewind" (go back ``rewind`` steps,
            twice as far at each further death, and draw new noise from there), "copy" (become a
            copy of a living board of its group) or "drop" (stop).
        rewind: steps of the first rewind.
        learn: a rewinding board's table loses the digits its failed run fixed that alone
            contradict it.
        budget: most network evaluations per group, an int or ``(B,)`` long (each board carrying
            its group's); None: as many as its boards would spend without rewinds.
        probe: with ``mode="propagate"``, also probe failed literals (``propagation.probe``) in
            cells with at most this many candidates whenever a table is propagated (0: never).
        batch_size: most boards per network call (None: all live boards in one call). Boards
            finish and pause at different times, so the live set shrinks during a run; sampling a
            pool of several batches together keeps the calls full for longer.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if on_dead not in ON_DEAD:
        raise ValueError(f"on_dead must be one of {ON_DEAD}, got {on_dead!r}")
    if rewind < 1:
        raise ValueError(f"rewind must be at least 1 step, got {rewind}")
    settle = (0.5 if mode == "propagate" else 0.99) if settle is None else float(settle)
    if not 0.5 <= settle < 1.0:
        raise ValueError(f"settle must be in [0.5, 1), got {settle}")
    proc, net, dev = sm.process, sm.model_fn, sm.device
    B = allowed.shape[0]
    pairs = _pairs(sm, steps, dilation)
    proc.prepare_steps(pairs)  # boards at mixed steps look their times up in one table
    S = len(pairs)
    ts = torch.stack([t for t, _, _ in pairs])
    ss = torch.stack([s for _, s, _ in pairs])
    cs = torch.tensor([float(c) for _, _, c in pairs], dtype=torch.float64, device=dev)

    start = allowed.to(dev)
    allowed = start.clone()
    group = torch.arange(B) if group is None else group.cpu()
    gid = torch.unique(group, return_inverse=True)[1].to(dev)  # groups numbered 0..G-1
    G = int(gid.max()) + 1 if B else 0
    size = torch.bincount(gid, minlength=G)
    if budget is None:
        limit = size * S
    elif isinstance(budget, Tensor):
        limit = torch.zeros(G, dtype=torch.long, device=dev).scatter_(0, gid, budget.to(dev).long())
    else:
        limit = torch.full((G,), int(budget), dtype=torch.long, device=dev)
    spent = torch.zeros(G, dtype=torch.long, device=dev)
    evals = torch.zeros(B, dtype=torch.long, device=dev)
    frame = torch.arange(B)
    boards = torch.full((B, N_CELLS), -1, dtype=torch.long, device=dev)
    dead = torch.zeros(B, dtype=torch.bool, device=dev)
    k = torch.zeros(B, dtype=torch.long, device=dev)  # each board's step: boards that rewound lag
    deaths = torch.zeros(B, dtype=torch.long, device=dev)
    stale = torch.ones(B, dtype=torch.bool, device=dev)  # tables not yet propagated
    live = torch.arange(B, device=dev)
    v = proc.prior((B, N_CELLS), generator=generator, device=dev)
    # rewinding needs each board's state at the start of every step it has taken
    keep_history = on_dead == "rewind" and mode != "static"
    if keep_history:
        hist_v = torch.empty(B, S, *v.shape[1:], dtype=v.dtype, device=dev)
        hist_a = torch.empty(B, S, N_CELLS, proc.K, dtype=torch.bool, device=dev)

    def decode(idx: Tensor, vv: Tensor) -> None:
        """Boards ``idx`` still running with sticks ``vv``: argmax of their simplex point over
        their allowed digits."""
        if len(idx):
            boards[idx] = sticks_to_simplex(vv).masked_fill(~allowed[idx], -1.0).argmax(-1)

    while len(live):
        kk = k[live]
        t_b = ts[kk]
        if keep_history:
            hist_v[live, kk], hist_a[live, kk] = v, allowed[live]
        stats = proc.stick_stats(v, proc.native_time(t_b))
        feats = proc.features(category_loglik(stats))  # (B, 81, 2K): local posterior, then its log
        paused = torch.zeros(len(live), dtype=torch.bool, device=dev)  # rewound: no step this time
        if mode != "static":
            table, gone = _narrow(allowed[live], feats[..., : proc.K], mode, settle, stale[live], probe)
            stale[live] = False
            allowed[live] = table
            finished = (table.sum(-1) == 1).all(-1) & ~gone
            g = gid[live]
            broke = (spent[g] >= limit[g]) & ~finished  # the group's budget is spent
            if bool(gone.any() | finished.any() | broke.any()):
                boards[live[finished]] = table[finished].float().argmax(-1)
                # a finished board answers its group: the group's other boards stop
                stop = torch.isin(g, g[finished]) & ~finished
                rescue = gone & ~stop & ~broke
                if on_dead == "copy" and bool(rescue.any()):
                    src = _donors(group[live.cpu()], (gone | stop | finished | broke).cpu(), rescue.cpu(),
                                  generator).to(dev)
                    if bool((src >= 0).any()):
                        to, fro = torch.nonzero(src >= 0).flatten(), src[src >= 0]
                        v[to], table[to], feats[to], kk[to], t_b[to] = v[fro], table[fro], feats[fro], kk[fro], t_b[fro]
                        stats = {n: x.index_copy(0, to, x[fro]) for n, x in stats.items()}
                        allowed[live[to]], k[live[to]] = table[to], kk[to]
                        frame[live[to].cpu()] = frame[live[fro].cpu()]
                        gone = gone.index_fill(0, to, False)
                elif on_dead == "rewind" and keep_history and bool(rescue.any()):
                    back = torch.nonzero(rescue).flatten()
                    b = live[back]
                    deaths[b] += 1
                    j = (kk[back] - rewind * 2 ** (deaths[b] - 1).clamp(max=20)).clamp_min(0)
                    restored = hist_a[b, j]
                    if learn:
                        restored = _exclude_failed(restored, table[back])
                    v[back], allowed[b], k[b], stale[b] = hist_v[b, j], restored, j, learn
                    gone, paused = gone.index_fill(0, back, False), paused.index_fill(0, back, True)
                dead[live[gone]] = True
                ended = broke & ~gone & ~stop
                decode(live[ended], v[ended])
                keep = ~(gone | finished | stop | broke)
                live, v, kk, t_b, paused = live[keep], v[keep], kk[keep], t_b[keep], paused[keep]
                stats = {n: x[keep] for n, x in stats.items()}
                feats = feats[keep]
                if len(live) == 0:
                    break
        go = torch.nonzero(~paused).flatten()
        if len(go) == 0:
            continue
        idx, kg = live[go], kk[go]
        evals[idx] += 1
        spent.index_add_(0, gid[idx], torch.ones_like(idx))
        sub = {n: x[go] for n, x in stats.items()}
        x_in, t_in = feats[go], t_b[go].float()
        step = len(go) if batch_size is None else int(batch_size)
        corr = torch.cat([net(x_in[i : i + step], t_in[i : i + step]) for i in range(0, len(go), step)])
        logits = proc.posterior_logits(category_loglik(sub), corr).masked_fill(~allowed[idx], float("-inf"))
        score = mixture_score(torch.softmax(logits, -1), sub)
        v[go] = proc.score_step(score, v[go], t_b[go], ss[kg], generator=generator, dilation=cs[kg])
        k[idx] += 1
        done = k[live] >= S  # at the end of time: decoded as they stand
        if bool(done.any()):
            decode(live[done], v[done])
            live, v = live[~done], v[~done]
    # dead and stopped boards: a best guess from their table (the starting table where it emptied
    # a cell)
    unset = boards < 0
    if bool(unset.any()):
        table = torch.where(allowed.any(-1, keepdim=True), allowed, start[frame.to(dev)])
        boards = torch.where(unset, table.float().argmax(-1), boards)
    return ConstrainedSamples(boards.cpu(), dead.cpu(), frame, evals.cpu())


def _exclude_failed(before: Tensor, after: Tensor) -> Tensor:
    """Tables ``before (n, 81, 9)`` minus every digit that a failed run fixed and that alone
    contradicts them: ``after (n, 81, 9)`` is where each run ended in contradiction. A deduction
    from the rules (failed-literal probing), so no solution is lost. All probes (one per settled
    cell of every run) are propagated as one batch."""
    fixed = (after.sum(-1) == 1) & (before.sum(-1) > 1)  # (n, 81) cells the run settled
    run, cell = torch.nonzero(fixed, as_tuple=True)
    out = before.clone()
    if len(run) == 0:
        return out
    probe = before[run].clone()  # (probes, 81, 9): each run's table with one settled cell fixed
    probe[torch.arange(len(run), device=before.device), cell] = after[run, cell]
    _, bad = propagate(probe)
    out[run[bad], cell[bad]] &= ~after[run[bad], cell[bad]]
    return out


def _donors(group: Tensor, out: Tensor, needy: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """For each board in ``needy (n,)`` bool, a random board of its ``group (n,)`` not ``out``
    (leaving this step), else -1: ``(n,)`` long."""
    src = torch.full_like(group, -1)
    for i in torch.nonzero(needy).flatten().tolist():
        pool = torch.nonzero((group == group[i]) & ~out).flatten()
        if len(pool):
            src[i] = pool[_rng.randint(0, len(pool), (1,), generator=generator)]
    return src
