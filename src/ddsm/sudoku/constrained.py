"""Diffusion sampling of boards under the rules: the constraint-aware sampler.

The reverse SDE of ``PosteriorJacobiProcess`` (DDSM's Euler-Maruyama step, time dilation included)
with the network's posterior logits masked before the score is formed, so the sampler never
proposes an excluded digit. Each board carries a candidate table ``allowed (B, 81, 9)``:

- it starts as the givens plus what propagation deduced from them (a given cell allows only its
  digit, so givens are imposed exactly, with no resetting of their state);
- ``mode="peers"``: once a cell has *settled* (its own sticks sit at one digit's vertex: local
  posterior above ``settle``, 0.99 by default), that digit is excluded from its 20 peers;
- ``mode="propagate"`` (default): settled cells are committed to their digit and the table is
  propagated (naked and hidden singles) after every step, so forced cells follow at once. Here a
  cell settles as soon as its local posterior passes 1/2 (the least that names one digit): early
  commitments surface contradictions early, while they are cheap and a living copy can take
  over. On norvig_top95 puzzles 1-24 (8 particles, 50 steps) that solved 7 against 1 at 0.99.
  A board whose table becomes contradictory is dropped (it cannot end valid), and a board whose
  table leaves one digit per cell is finished early: both save network calls;
- ``mode="static"``: only the starting table.

Excluded digits get posterior zero, so the mixture score drives each cell along the exact reverse
path of one of its allowed digits. Boards still running at the end are decoded by argmax of their
simplex point over their allowed digits. Validity is not guaranteed and must be checked.

Particles of one puzzle (``group``) cooperate, as in sequential Monte Carlo with a 0/1 weight
(alive or not): when a board's table becomes contradictory it is replaced by a copy of a random
living board of its group (state, table and frame), which then diverges through the SDE's own
noise, so the group's budget is not lost with the board; and once one board of a group is
finished, the group's other boards stop. Boards of a group may sit in different frames (board
symmetries), so a copy records whose frame it is in (``frame``) for the caller to map it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .. import rng as _rng
from ..sampling.loop import dilated_pairs
from ..special.stickbreaking import sticks_to_simplex
from .board import N_CELLS
from .model_io import SudokuModel
from .propagation import eliminate, propagate

MODES = ("static", "peers", "propagate")


def _narrow(allowed: Tensor, local: Tensor, mode: str, settle: float) -> tuple[Tensor, Tensor]:
    """Candidate tables after this step's settled cells; ``(allowed, dead)``."""
    settled = (local > settle) & allowed  # (B, 81, 9) one digit at most per cell (settle >= 0.5)
    if mode == "peers":
        narrowed = eliminate(allowed, settled)
        # a peer's claim never empties a cell here: the clash shows in the final check
        return torch.where(narrowed.any(-1, keepdim=True), narrowed, allowed), torch.zeros(
            allowed.shape[0], dtype=torch.bool, device=allowed.device)
    committed = torch.where(settled.any(-1, keepdim=True), settled, allowed)
    return propagate(committed)


@dataclass
class ConstrainedSamples:
    """Output of :func:`constrained_sample`.

    Attributes:
        boards: ``(B, 81)`` long, every digit allowed by the starting table of the board's frame.
        dead: ``(B,)`` bool: the rules ruled the board out (its board is a best guess, invalid).
        frame: ``(B,)`` long: the input board whose frame (symmetry and starting table) the board
            is in; itself unless it was replaced by a copy of another board of its group.
        board_steps: network evaluations spent, one per board per step.
    """

    boards: Tensor
    dead: Tensor
    frame: Tensor
    board_steps: int


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
    resample: bool = True,
    generator: Optional[torch.Generator] = None,
) -> ConstrainedSamples:
    """Sample boards under candidate tables ``allowed (B, 81, 9)`` bool.

    Args:
        settle: local posterior above which a cell counts as settled (>= 0.5; None: 0.5 for
            "propagate", 0.99 for "peers").
        group: ``(B,)`` long puzzle id of each board (None: every board on its own). Needs a mode
            other than "static" (boards die or finish only when their tables narrow).
        resample: replace dead boards by copies of living boards of their group.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    settle = (0.5 if mode == "propagate" else 0.99) if settle is None else float(settle)
    if not 0.5 <= settle < 1.0:
        raise ValueError(f"settle must be in [0.5, 1), got {settle}")
    proc, net, dev = sm.process, sm.model_fn, sm.device
    B = allowed.shape[0]
    start = allowed.to(dev)
    allowed = start.clone()
    group = torch.arange(B) if group is None else group.cpu()
    frame = torch.arange(B)
    boards = torch.full((B, N_CELLS), -1, dtype=torch.long, device=dev)
    dead = torch.zeros(B, dtype=torch.bool, device=dev)
    live = torch.arange(B, device=dev)
    v = proc.sticks(proc.prior((B, N_CELLS), generator=generator, device=dev))
    # the previous posterior of each live board (self-conditioning; zeros: none yet)
    est = torch.zeros(B, N_CELLS, proc.K, dtype=torch.float64, device=dev) if proc.self_condition else None
    board_steps = 0
    for t, s, c in dilated_pairs(proc.time_grid(steps, device=dev), dilation, 1.0):
        n = len(live)
        t_b, s_b = t.expand(n), s.expand(n)
        stats = proc.stick_stats(v, t_b)
        feats = proc.features(stats)
        if mode != "static":
            table, gone = _narrow(allowed[live], feats.exp(), mode, settle)
            allowed[live] = table
            finished = (table.sum(-1) == 1).all(-1) & ~gone
            if bool(gone.any() | finished.any()):
                boards[live[finished]] = table[finished].float().argmax(-1)
                lg = group[live.cpu()]
                # a finished board answers its group: the group's other boards stop
                stop = torch.isin(lg, lg[finished.cpu()]).to(dev) & ~finished
                if resample:
                    src = _donors(lg, (gone | stop | finished).cpu(), gone.cpu(), generator).to(dev)
                    if bool((src >= 0).any()):
                        to, fro = torch.nonzero(src >= 0).flatten(), src[src >= 0]
                        v[to], table[to], feats[to] = v[fro], table[fro], feats[fro]
                        if est is not None:
                            est[to] = est[fro]
                        stats = {k: x.index_copy(0, to, x[fro]) for k, x in stats.items()}
                        allowed[live[to]] = table[to]
                        frame[live[to].cpu()] = frame[live[fro].cpu()]
                        gone = gone.index_fill(0, to, False)
                dead[live[gone]] = True
                keep = ~(gone | finished | stop)
                live, v = live[keep], v[keep]
                est = None if est is None else est[keep]
                stats = {k: x[keep] for k, x in stats.items()}
                feats, t_b, s_b = feats[keep], t_b[keep], s_b[keep]
                if len(live) == 0:
                    break
        board_steps += len(live)
        logits = net(proc.network_input(feats, est), t_b.float()).double().masked_fill(~allowed[live], float("-inf"))
        probs = torch.softmax(logits, -1)
        est = None if est is None else probs
        score = proc.mixture_score(probs, stats)
        v = proc.stick_step(score, v, t_b, s_b, generator=generator, **({"dilation": c} if c != 1.0 else {}))
    if len(live):
        x = sticks_to_simplex(v).masked_fill(~allowed[live], -1.0)
        boards[live] = x.argmax(-1)
    # dead and stopped boards: a best guess from their table (the starting table where it emptied
    # a cell)
    unset = boards < 0
    if bool(unset.any()):
        table = torch.where(allowed.any(-1, keepdim=True), allowed, start[frame.to(dev)])
        boards = torch.where(unset, table.float().argmax(-1), boards)
    return ConstrainedSamples(boards.cpu(), dead.cpu(), frame, board_steps)


def _donors(group: Tensor, out: Tensor, needy: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """For each board in ``needy (n,)`` bool, a random board of its ``group (n,)`` not ``out``
    (leaving this step), else -1: ``(n,)`` long."""
    src = torch.full_like(group, -1)
    for i in torch.nonzero(needy).flatten().tolist():
        pool = torch.nonzero((group == group[i]) & ~out).flatten()
        if len(pool):
            src[i] = pool[_rng.randint(0, len(pool), (1,), generator=generator)]
    return src
