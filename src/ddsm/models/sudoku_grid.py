"""The Sudoku denoiser: a network over (cell, digit) pairs that respects the board's symmetries.

A backbone of the registered ``jacobi`` process (DDSM, posterior output): its input is the
process's features of every cell over the 9 digits, the local posterior and its clamped, scaled
log, ``(B, 81, 2 K)``; its output is the correction ``(B, 81, K)`` (centred over the digits) that
the process adds to the exact local evidence to form the logits of the clean-board posterior. A
zero correction is "every cell on its own".

Each of the 81 x 9 (cell, digit) pairs carries a feature vector. A block mixes information only by
averaging over the structures of the game: over the row, the column and the box of the cell (for
the same digit), and over the digits of the cell. There are no position or digit embeddings, so

- relabelling the digits permutes the outputs the same way (digit equivariance: one training
  grid teaches all 9! relabellings of it), and
- permuting rows within a band, bands, columns within a stack or stacks permutes the outputs the
  same way (the row and column averages have separate weights, so a transpose is not a symmetry).

This is the structure the DDSM reference expressed with an additive row/column/box attention bias
in a 20-layer transformer; here it is built in, which is what lets a small model train on a CPU.

Recurrent rounds (``rounds = R > 0``): one more block, with its own weights, is run R times at
position ``tied_after`` among the untied blocks (a weight-tied recurrence, as in recurrent
relational networks). Each run is one more round of row/column/box/digit message passing, which
is what the network lacks for generation (12 untied blocks generate valid grids more often than 8,
while more training of 8 does not move the held-out loss), at the parameter cost of one block.
``rounds`` is a plain attribute: a caller may run more rounds at sampling than in training.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Denoiser
from .embeddings import ConditionEmbedding

_SIDE = 9  # the board is 9 x 9 cells in 3 x 3 boxes


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale) + shift


class _PoolBlock(nn.Module):
    """h + gate * W_out gelu(W_own u + W_row avg_row(u) + W_col avg_col(u) + W_box avg_box(u)
    + W_dig avg_digits(u)), u = adaLN(h).

    Averaging is linear, so each W_* is applied after its average, on 9 (or 81) times fewer
    vectors than the board has pairs: only W_own and W_out run at full resolution.
    """

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.own, self.row, self.col, self.box, self.dig = (nn.Linear(d_model, hidden) for _ in range(5))
        for lin in (self.row, self.col, self.box, self.dig):
            nn.init.zeros_(lin.bias)  # one bias (own's) is enough
            lin.bias.requires_grad_(False)
        self.out = nn.Linear(hidden, d_model)
        self.ada = nn.Linear(d_model, 3 * d_model)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)  # adaLN-zero: every block starts as the identity

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h: ``(B, 3, 3, 3, 3, K, D)`` = (band, row in band, stack, column in stack, digit); c: ``(B, D)``."""
        shift, scale, gate = self.ada(c)[:, None, None, None, None, None, :].chunk(3, dim=-1)
        u = _modulate(self.norm(h), shift, scale)
        row = self.row(u.mean(dim=(3, 4), keepdim=True))  # same row: same band and row in band
        col = self.col(u.mean(dim=(1, 2), keepdim=True))  # same column
        # same box: same band and stack (two single-axis means: a mean over two non-adjacent axes
        # at once is several times slower on CPU)
        box = self.box(u.mean(dim=4, keepdim=True).mean(dim=2, keepdim=True))
        dig = self.dig(u.mean(dim=5, keepdim=True))  # same cell, all digits
        # The full-size (board x hidden) tensor is made once and the pooled terms are added in
        # place: broadcast adds allocating a new full tensor each were a third of the CPU forward.
        # row + box is still small (band, row, stack, digit), so it is added as one term.
        mixed = self.own(u)
        mixed += row + box
        mixed += col
        mixed += dig
        return h + gate * self.out(F.gelu(mixed))


class SudokuDenoiser(Denoiser):
    """Digit-equivariant posterior network for 9 x 9 boards (81 positions, K = 9 digits).

    Args:
        in_channels, out_channels: 2 K = 18 features in (the ``jacobi`` process's local posterior
            and log-posterior), K = 9 logit corrections out.
        n_classes: class labels (0: unconditional).
        d_model: width of each (cell, digit) feature vector.
        n_layers: pooling blocks.
        hidden: width inside a block.
        rounds: runs of the weight-tied block (0: no tied block).
        tied_after: the tied block runs after this many untied blocks (default: half of them).
    """

    description = "digit-equivariant row/column/box pooling network over (cell, digit) pairs (Sudoku)"

    def __init__(self, in_channels: int = 18, out_channels: int = 9, n_classes: int = 0, *,
                 d_model: int = 64, n_layers: int = 6, hidden: int = 128,
                 rounds: int = 0, tied_after: Optional[int] = None) -> None:
        super().__init__()
        if in_channels not in (2 * out_channels, 3 * out_channels):
            raise ValueError(f"SudokuDenoiser reads 2 features per digit (the jacobi process's local posterior "
                             f"and log-posterior; 3 with the self-conditioning estimate), got {in_channels} "
                             f"channels for {out_channels} digits")
        self.in_channels, self.out_channels, self.n_classes = in_channels, out_channels, n_classes
        self.d_model, self.n_layers, self.hidden = d_model, n_layers, hidden
        self.embed = ConditionEmbedding(d_model, n_classes)
        # per (cell, digit): local probability, bounded local log-probability[, posterior estimate]
        self.inp = nn.Linear(in_channels // out_channels, d_model)
        self.blocks = nn.ModuleList(_PoolBlock(d_model, hidden) for _ in range(n_layers))
        if int(rounds) != rounds or rounds < 0:
            raise ValueError(f"rounds must be an integer >= 0, got {rounds}")
        self.rounds = int(rounds)
        self.tied_after = n_layers // 2 if tied_after is None else int(tied_after)
        if not 0 <= self.tied_after <= n_layers:
            raise ValueError(f"tied_after must lie in [0, {n_layers}], got {tied_after}")
        # registered only when used, so checkpoints without rounds keep their exact parameter names
        self.tied = _PoolBlock(d_model, hidden) if self.rounds > 0 else None
        self.out_norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.out_ada = nn.Linear(d_model, 2 * d_model)
        self.head = nn.Linear(d_model, 1)
        for lin in (self.out_ada, self.head):  # start from "every cell on its own"
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """x: ``(B, 81, 2 K)`` local posteriors then clamped log-posteriors / 10 (the ``jacobi``
        process's features; ``(B, 81, 3 K)`` with its self-conditioning estimate after them);
        t: ``(B,)``; cond: ``(B,)`` or None -> ``(B, 81, K)`` float32 correction, centred over the
        digits."""
        B, L, C = x.shape
        K = self.out_channels
        if L != _SIDE * _SIDE:
            raise ValueError(f"SudokuDenoiser needs 81 cells, got {L}")
        if C != self.in_channels:
            raise ValueError(f"SudokuDenoiser expects {self.in_channels} input channels, got {C}")
        c = F.silu(self.embed(t, cond))
        feats = x.float().reshape(B, L, C // K, K).transpose(-1, -2)  # (B, 81, K, 2 or 3)
        # cells in row-major order: (row, column) = (3 band + r, 3 stack + c)
        h = self.inp(feats).view(B, 3, 3, 3, 3, K, self.d_model) + c[:, None, None, None, None, None, :]
        for i, block in enumerate(self.blocks):
            if i == self.tied_after:
                h = self._recur(h, c)
            h = block(h, c)
        if self.tied_after == len(self.blocks):
            h = self._recur(h, c)
        # The output layers run in float32 even under bf16 autocast, and the correction is centred
        # over the digits. Logits are defined up to a constant per cell, so nothing in training
        # holds that constant: it drifts (to several hundred in the bundled model), and a bf16
        # head then rounds the per-digit differences, which are all that matter, to steps of 1-2
        # nats (likely why a GPU run's training loss rose; see docs/design.md, "Precision").
        with torch.autocast(x.device.type, enabled=False):
            shift, scale = self.out_ada(c.float())[:, None, None, None, None, None, :].chunk(2, dim=-1)
            corr = self.head(_modulate(self.out_norm(h.float()), shift, scale)).reshape(B, L, K)
        # the process adds the exact evidence in float64 (bf16 autocast cannot round it)
        return corr - corr.mean(dim=-1, keepdim=True)


    def _recur(self, h: Tensor, c: Tensor) -> Tensor:
        """``rounds`` runs of the tied block on h ``(B, 3, 3, 3, 3, K, D)``."""
        if self.tied is not None:
            for _ in range(self.rounds):
                h = self.tied(h, c)
        return h


def with_self_condition(base: SudokuDenoiser) -> SudokuDenoiser:
    """A copy of a trained ``base`` that also reads the self-conditioning estimate (a third feature
    per digit, :class:`ddsm.processes.JacobiProcess` ``self_condition``) and, with that feature's
    input weights at zero, computes exactly what ``base`` computes: fine-tuning starts from it."""
    if base.in_channels != 2 * base.out_channels:
        raise ValueError("the network already reads a self-conditioning estimate")
    net = SudokuDenoiser(**_options(base, in_channels=3 * base.out_channels))
    state = base.state_dict()
    weight = state["inp.weight"]  # (d_model, 2)
    state["inp.weight"] = torch.cat([weight, torch.zeros_like(weight[:, :1])], dim=1)
    net.load_state_dict(state)
    return net.to(weight.device)


def _options(base: SudokuDenoiser, **change: object) -> dict:
    """``base``'s constructor options with ``change`` applied."""
    return {**base.config(), **change}


def deepen(base: SudokuDenoiser, n_layers: int) -> SudokuDenoiser:
    """A copy of a trained ``base`` with ``n_layers`` blocks that computes exactly what ``base``
    computes, so a deeper network can warm-start from a shallower one.

    Every block is a residual whose output gate comes from a zero-initialised adaLN layer, so a fresh
    block is the identity. The new blocks are spread evenly between the old ones (the old order is
    kept): each is one more round of row/column/box/digit message passing, where more rounds are
    what a deeper Sudoku network is for.
    """
    old = base.n_layers
    if n_layers < old:
        raise ValueError(f"cannot deepen {old} blocks to {n_layers}")
    if base.rounds:
        raise ValueError("deepen a network before adding recurrent rounds to it")
    net = SudokuDenoiser(**_options(base, n_layers=n_layers, tied_after=None))
    # old block i goes to position slot[i]: new blocks fill the gaps, as evenly as possible
    slot = [i + (i + 1) * (n_layers - old) // (old + 1) for i in range(old)]
    state = net.state_dict()  # fresh blocks keep their (identity) initialisation
    for name, value in base.state_dict().items():
        if name.startswith("blocks."):
            _, i, rest = name.split(".", 2)
            name = f"blocks.{slot[int(i)]}.{rest}"
        state[name] = value
    net.load_state_dict(state)
    return net.to(next(base.parameters()).device)


def add_rounds(base: SudokuDenoiser, rounds: int, tied_after: Optional[int] = None) -> SudokuDenoiser:
    """A copy of a trained ``base`` with a weight-tied block run ``rounds`` times after
    ``tied_after`` of its blocks (default: half), computing exactly what ``base`` computes: the
    tied block starts as the identity (zero adaLN gate), so training warm-started from ``base``
    only has to learn what the extra rounds add."""
    if base.rounds:
        raise ValueError(f"the network already has {base.rounds} recurrent rounds")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    net = SudokuDenoiser(**_options(base, rounds=rounds, tied_after=tied_after))
    state = net.state_dict()
    state.update(base.state_dict())  # the tied block keeps its identity initialisation
    net.load_state_dict(state)
    return net.to(next(base.parameters()).device)
