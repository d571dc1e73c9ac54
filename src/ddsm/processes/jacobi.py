"""DDSM: Jacobi diffusion on the simplex via stick-breaking (Avdeyev et al., ICML 2023).

K - 1 independent Jacobi diffusions v_i with a_i = 1, b_i = K - 1 - i (0-based) mapped by
stick-breaking to the simplex have the flat Dirichlet as stationary law. Each stick runs at speed
s_i (``speed_balanced``: s_i = 2 / (a_i + b_i), so every stick's slowest mode decays as e^-tau).

Clocks: public t in [0, 1] maps to native tau = T t^2; the sampling grid is uniform in t, i.e.
finer near the data where the score changes fastest.

Network (``output="posterior"``, the default): the network predicts the clean-token posterior
p(x0_l = k | v) as a *residual on the exact local evidence*,

    logits_lk = log q_tau(v_l | k) + c_lk(v, t),   c centred over k,

trained by cross-entropy on x0; the stick score then follows from the mixture identity
(``ddsm.special.stick_posterior``), and feeds DDSM's reverse SDE and probability-flow ODE
unchanged. c = 0 is the exact posterior of iid-uniform data, so an untrained network already gives
log2 K bits per token, where the paper's score output (``output="score"``,
:class:`ddsm.processes.jacobi_score.JacobiScoreProcess`) starts at 24 bits per token for K = 4 and
943 for K = 65 (docs/design.md, "Why DDSM learned slowly").

The state is the sticks ``v (B, L, K-1)`` in float64 (``state_kind = "sticks"``). The model output
handed to ``step`` is the posterior logits ``(B, L, K)`` float64 (guidance edits them).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import cached_property
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng as _rng
from ..models.base import takes_raw_state
from ..special.stick_posterior import category_loglik, mixture_score
from ..special.stick_tables import LineageDraws, StickTables, draw_sticks
from ..special.stickbreaking import sticks_to_simplex
from ..special.transition import LineageWindows, beta_sample, stats_at_one
from ._ode_likelihood import ode_log_density
from ._sde_likelihood import sde_bits_per_token
from .base import LossOutput, ModelFn, NoisySample, Process, reduce_terms, sample_categorical
from .multistep import ExtrapolatedCorrection

#: log-posterior features are clamped here (nats) and scaled by 1 / _FEATURE_SCALE
_FEATURE_FLOOR, _FEATURE_SCALE = -30.0, 10.0
#: the fine log feature (``fine_log``): clamped where a category is all but ruled out
_FINE_FLOOR, _FINE_SCALE = -4.0, 2.0
#: single-time tables kept (sampling and likelihood grids ask for the same times again and again)
_TABLE_BYTES = 1 << 28


class _FlushTinyGrad(torch.autograd.Function):
    """Identity whose backward zeroes gradient entries below 1e-30 in magnitude.

    Near the data the posterior is decided to within e^-1000, so the cross-entropy's float64
    gradient has entries far below float32's smallest normal number; cast into the network they are
    subnormal, and subnormal arithmetic made the CPU backward pass 1.8x slower (0.28 s vs 0.15 s per
    step, 64 x 64 conv, measured with torch.set_flush_denormal). Such entries move no weight."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        return g.masked_fill(g.abs() < 1e-30, 0.0)


class JacobiProcess(Process):
    """Dirichlet diffusion score model: Jacobi diffusions on stick-broken simplex coordinates,
    with a posterior-parameterised network (``output="score"`` builds the paper's score network,
    :class:`~ddsm.processes.jacobi_score.JacobiScoreProcess`)."""

    name = "jacobi"
    description = ("DDSM: Jacobi diffusion on the simplex (stick-breaking), exact transition law, reverse SDE; "
                   "network = residual posterior on the local evidence (output=score: the paper's score)")
    state_kind = "sticks"
    supports_dilation = True
    classifier_guidance = "posterior-logits"
    likelihood_t_start = True
    likelihood_bounds = ("ode", "sde")
    #: the last reverse step draws x0 from the network's posterior (posterior output only)
    final_draw = True

    #: ``output`` value -> the subclass that implements that parameterisation. Subclasses register
    #: themselves (``class JacobiScoreProcess(JacobiProcess, output="score")``), so this module
    #: needs no import of theirs: ``ddsm.processes`` imports every one before any is built.
    _output_classes: ClassVar[dict[str, type["JacobiProcess"]]] = {}

    def __init_subclass__(cls, output: Optional[str] = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if output is not None:
            JacobiProcess._output_classes[output] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> "JacobiProcess":
        # ``JacobiProcess(K, output="score")`` (how a saved config is rebuilt) builds the subclass
        # of that parameterisation; an unknown output falls through to ``__init__``'s error.
        variant = JacobiProcess._output_classes.get(kwargs.get("output", "posterior"))
        if cls is JacobiProcess and variant is not None:
            return super().__new__(variant)
        return super().__new__(cls)

    def __init__(self, K: int, T: float = 10.0, t_min: float = 0.01, t_train_min: float = 0.004,
                 speed_balanced: bool = True, eps: float = 1e-5, n_train_times: int = 256,
                 output: str = "posterior", focus: float = 1.0, focus_tau_min: float = 0.05,
                 focus_tau_max: float = 3.0, substeps: int = 8, focus_law: str = "entropy",
                 grid_focus: float = 0.0, fine_log: bool = True, extrapolate: float = 1.0,
                 self_condition: bool = True) -> None:
        """
        Args:
            K: number of categories.
            T: largest native time (prior); all sticks are within e^-T of stationarity at T.
            t_min: native time where sampling stops (and where likelihoods are evaluated).
            t_train_min: smallest native training time.
            speed_balanced: stick speeds 2 / (a_i + b_i) instead of 1.
            eps: sticks are clamped to [eps, 1 - eps].
            n_train_times: training times are drawn from this many fixed public times (cell
                midpoints, uniform in t), whose exact stick statistics and lineage laws are
                tabulated once. The law at each time is exact; the grid makes the time integral
                of the loss a fine quadrature.
            output: ``"posterior"`` (this class) or ``"score"`` (the paper's parameterisation).
            focus: fraction of each batch's times drawn from the focus law below instead of
                uniformly over the grid. Cross-entropy is minimised by the true posterior at
                every time, so this only moves effort, not the optimum.
            focus_tau_min, focus_tau_max: the native window of the ``"window"`` law.
            focus_law: ``"entropy"`` (default): rows in proportion to how much the local
                evidence's posterior entropy (iid-uniform tokens, exact noisy law) rises across
                each training cell, so training times are uniform in local information, as
                masked diffusion's uniform mask rate is; nothing to tune, and it follows K and T
                (K = 4: 90 % of the mass in tau 0.38-2.1; K = 65: 1.0-3.8). ``"window"``: uniform
                over [focus_tau_min, focus_tau_max] (round 2's law, focus 0.5; Sudoku's, 0.8). On
                bench/entropy.py's chains at 120 s (seeds 1, 2): excess over the truth 0.075 /
                0.076 bits/token (window, 0.5), 0.052 / 0.055 (entropy, 0.5), 0.018 / 0.047
                (entropy, 1.0).
            substeps: Euler-Maruyama sub-steps per reverse step (posterior output). The network is
                called once per step; between sub-steps its correction to the logits is held fixed
                while the exact local evidence log q_tau(v_l | k), the stiff part of the score near
                a vertex, is re-evaluated at the moving sticks and time. A sub-step costs a table
                lookup, not a network call. On the bundled dhs4 model at 25 steps, 8 sub-steps
                took the designs' 4-mer JS from 0.085 to 0.063 (100 plain steps: 0.060). More
                did not measurably help: 16 instead of 8 gave 4-mer JS 0.0566 against 0.0593 and
                AUROC 0.570 against 0.572 over six seeds on the bundled dhs4 model (paired
                difference -0.0027 +- 0.0021), and 3-mer JS 0.0231 against 0.0226 over three
                seeds on a model trained by ``ddsm train`` (bench/cli_dna.py), at 1.15-1.25x the
                time. Default 8 (round 2l shipped 16 on single-seed evidence that more seeds did
                not confirm; checkpoints record theirs).
            grid_focus: fraction w in [0, 1) of the sampling grid's step density that follows the
                entropy law (:attr:`entropy_focus`, where tokens get decided); the rest stays
                uniform in public t (0: today's grid). The step times are quantiles of
                (1 - w) uniform + w entropy law, so fewer network calls are spent where the
                sticks are still near stationarity, more where the evidence forms.
            fine_log: the network also sees the log local posterior clamped at -4 nats (a third
                feature per category, in_channels 3K), with the resolution of the range where
                tokens get decided; the default clamp at -30 nats keeps near-vertex strength.
                Validation chains of bench/entropy.py (seeds 1, 2; 120 s): paired excess +0.0122
                / +0.0422 bits/token against +0.0156 / +0.0473 without; dhs4 at three CPU
                minutes: no change. Checkpoints saved before the option existed load without it.
            extrapolate: alpha >= 0 (posterior output): the correction held over a call's
                sub-steps is the network's c_n plus alpha times its change since the run's
                previous call, c_n - c_{n-1} (:class:`ddsm.sampling.ExtrapolatedCorrection`, applied
                by :meth:`sampling_model`; 0: held as returned). The held value otherwise lags the
                sequence, which keeps deciding during the call; a two-step multistep rule as
                Adams-Bashforth and DPM-Solver's multistep samplers use, same network calls.
                Default 1 (round 2n), chosen on valid.fasta over six sampling seeds: a dhs4 model
                trained by ``ddsm train`` (100 steps, bench/cli_dna.py) 3-mer JS 0.0242 / 0.0211 /
                0.0222 at alpha 0 / 1 / 1.5 (paired 1 - 0: -0.0030 +- 0.0004); the bundled dhs4
                model (20 steps, guided, bench/select_bundled.py) 4-mer JS 0.0593 / 0.0559 / 0.0539
                / 0.0545 / 0.0561 at alpha 0 / 0.5 / 1 / 1.5 / 2. Checkpoints saved before the
                option existed keep 0.
            self_condition: the network also reads a posterior estimate (K more input channels):
                its own first pass on a zero estimate in training (half of each batch, no
                gradient) and in the ODE bound (two passes per evaluation, so the drift is still a
                function of (v, t)); the previous call's posterior in a sampling run (one pass per
                call). A second round of inference in which each position sees its neighbours'
                posteriors, not only their local evidence. Default True (round 2u): through
                ``ddsm train`` / ``ddsm score`` (800 steps, bench/cli_chain.py) it lowered the bound
                on all five chains (-0.0033 bits/token on average) and brought it level with masked
                diffusion's (-0.0001 +- 0.0012 over the five, from +0.0032 +- 0.0011); on dhs4
                (bench/cli_dna.py) bits 1.9089 against 1.9087, designs' 3-mer JS 0.0199 against
                0.0211 over six seeds. A training step costs ~1.2-1.45x, the ODE bound ~1.5-2.3x,
                a sampling run one call more. Checkpoints saved before the option existed keep False.
        """
        super().__init__(K)
        if not 0 < t_train_min <= t_min < T:
            raise ValueError(f"jacobi process needs 0 < t_train_min <= t_min < T, got "
                             f"t_train_min={t_train_min}, t_min={t_min}, T={T}")
        if not 0 < eps < 0.5:
            raise ValueError(f"jacobi process needs 0 < eps < 0.5, got {eps}")
        if int(n_train_times) != n_train_times or n_train_times < 0:
            raise ValueError(f"jacobi process needs an integer n_train_times >= 0, got {n_train_times}")
        if output not in ("posterior", "score"):
            raise ValueError(f"jacobi output must be 'posterior' or 'score', got {output!r}")
        if int(substeps) != substeps or substeps < 1:
            raise ValueError(f"jacobi process needs an integer substeps >= 1, got {substeps}")
        if not 0.0 <= grid_focus < 1.0:
            raise ValueError(f"jacobi grid_focus must lie in [0, 1), got {grid_focus}")
        if isinstance(extrapolate, bool) or not (math.isfinite(extrapolate) and extrapolate >= 0.0):
            raise ValueError(f"jacobi extrapolate must be a finite number >= 0, got {extrapolate}")
        if focus_law not in ("window", "entropy"):
            raise ValueError(f"jacobi focus_law must be 'window' or 'entropy', got {focus_law!r}")
        if not 0.0 <= focus <= 1.0 or not 0.0 < focus_tau_min < focus_tau_max:
            raise ValueError(f"jacobi focus needs 0 <= focus <= 1 and 0 < focus_tau_min < focus_tau_max, got "
                             f"{focus}, {focus_tau_min}, {focus_tau_max}")
        self.T, self.t_min, self.t_train_min = float(T), float(t_min), float(t_train_min)
        self.speed_balanced, self.eps = bool(speed_balanced), float(eps)
        self.n_train_times, self.output = int(n_train_times), output
        self.focus, self.focus_tau_min, self.focus_tau_max = float(focus), float(focus_tau_min), float(focus_tau_max)
        self.substeps, self.focus_law, self.grid_focus = int(substeps), focus_law, float(grid_focus)
        self.fine_log, self.extrapolate = bool(fine_log), float(extrapolate)
        self.self_condition = bool(self_condition)
        i = np.arange(K - 1)
        self.a = np.ones(K - 1)
        self.b = (K - 1 - i).astype(np.float64)
        self.speed = 2.0 / (self.a + self.b) if speed_balanced else np.ones(K - 1)
        self._tables: OrderedDict[bytes, tuple[StickTables, Optional[LineageDraws]]] = OrderedDict()
        self._memo: Optional[tuple[Tensor, int, Tensor, dict[str, Tensor]]] = None

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options saved before ``output`` existed were the score parameterisation; those saved
        before ``focus_law`` existed trained with the window law (and focus 0.5 by default), and
        those saved before ``fine_log`` existed fed the network two features per category.
        Posterior checkpoints that do not record ``substeps`` (saved before the option existed)
        keep the 8 they were sampled with, whatever the default becomes; the ones saved in round
        2l record the 16 of that round's default and keep it. Those saved before ``extrapolate``
        existed sampled with the correction held as returned (0), and keep it; those saved before
        ``self_condition`` existed have networks that read no estimate."""
        options = {"output": "score", **options}
        if options["output"] == "posterior":
            options = {"focus_law": "window", "focus": 0.5, "fine_log": False, "substeps": 8, "extrapolate": 0.0,
                       "self_condition": False, **options}
        return options

    # ------------------------------------------------------------------ clocks
    def native_time(self, t: Tensor) -> Tensor:
        """Public t (B,) -> native tau (B,) float64."""
        return self.T * t.double() ** 2

    def public_time(self, tau: Tensor) -> Tensor:
        return torch.sqrt(tau.double() / self.T)

    # ------------------------------------------------------------------ exact stick statistics
    def _covering_table(self, times: np.ndarray, inv: np.ndarray, key: bytes) -> tuple[bytes, np.ndarray]:
        """A cached table holding every one of ``times`` (sorted, unique), and the rows in it;
        else ``key`` and ``inv`` unchanged. Sub-steps ask for one time at a time, which
        :meth:`time_grid` has tabulated together (one table build instead of one per time)."""
        for other in reversed(self._tables):
            if other == b"train":
                continue
            grid = np.frombuffer(other, dtype=np.float64)
            pos = np.searchsorted(grid, times).clip(0, len(grid) - 1)
            if bool((grid[pos] == times).all()):
                return other, pos[np.asarray(inv).reshape(-1)]
        return key, inv

    @cached_property
    def train_times(self) -> Tensor:
        """``(G,)`` float64 public training times: cell midpoints of [sqrt(t_train_min / T), 1]."""
        lo = math.sqrt(self.t_train_min / self.T)
        g = torch.arange(max(self.n_train_times, 1), dtype=torch.float64)
        return lo + (1.0 - lo) * (g + 0.5) / max(self.n_train_times, 1)

    def _tables_at(self, tau: Tensor, *, draws: bool = False) -> tuple[StickTables, Optional[LineageDraws], Tensor]:
        """Tables covering native times ``tau (B,)`` and each row's index in them.

        The training grid has its own tables; any other set of times is tabulated on first use and
        kept (least recently used dropped), since sampling and likelihood grids repeat."""
        taus = tau.detach().double().cpu().numpy()
        grid = self.native_time(self.train_times).numpy()
        rows = np.searchsorted(grid, taus).clip(0, len(grid) - 1)
        if self.n_train_times and bool((grid[rows] == taus).all()):
            key, times, inv = b"train", grid, rows
        else:
            times, inv = np.unique(taus, return_inverse=True)
            key = times.tobytes()
        if key not in self._tables and not draws:
            key, inv = self._covering_table(times, inv, key)
        if key in self._tables:
            self._tables.move_to_end(key)
            stats, lineage = self._tables[key]
        else:
            stats, lineage = StickTables(times, self.a, self.b, self.speed), None
        if draws and lineage is None:
            lineage = LineageDraws(times, self.a, self.b, self.speed)
        self._tables[key] = (stats, lineage)
        per_entry = 8 * 2 * 4 * 128 * (self.K - 1)  # bytes per tabulated time
        while len(self._tables) > max(64, _TABLE_BYTES // per_entry) + 1:
            oldest = next(iter(self._tables))
            self._tables.pop(oldest if oldest != b"train" else list(self._tables)[1])
        return stats, lineage, torch.from_numpy(np.asarray(inv).reshape(-1)).to(tau.device)

    def stick_stats(self, v: Tensor, tau: Tensor, *, scores: bool = True) -> dict[str, Tensor]:
        """Per-stick log-densities and (with ``scores``) scores of sticks ``v (B, L, K-1)`` at
        native ``tau (B,)`` under each relation to a clean category (vertex 1, vertex 0,
        stationary): a dict of ``(B, L, K-1)`` float64 (see :meth:`StickTables.stats`).
        Differentiable in ``v``.

        The last result is kept: ``model_output`` and ``step`` ask for the same one (the scores
        are added to it when a later call needs them)."""
        memo = self._memo
        if memo is not None and memo[0] is v and memo[1] == v._version and torch.equal(memo[2], tau):
            stats = memo[3]
            if scores and "score_one" not in stats:
                B, L, K1 = v.shape
                tables, _, rows = self._tables_at(tau)
                more = tables.scores(v.reshape(B * L, K1).double(), rows.repeat_interleave(L))
                stats.update({k: x.reshape(B, L, K1) for k, x in more.items()})
            return stats
        B, L, K1 = v.shape
        tables, _, rows = self._tables_at(tau)
        out = tables.stats(v.reshape(B * L, K1).double(), rows.repeat_interleave(L), scores=scores)
        stats = {k: x.reshape(B, L, K1) for k, x in out.items()}
        self._memo = (v, v._version, tau.detach().clone(), stats)
        return stats

    def local_loglik(self, v: Tensor, tau: Tensor) -> Tensor:
        """log q_tau(v_l | k) for every position and category: ``(B, L, K)`` float64 (tabulated)."""
        return category_loglik(self.stick_stats(v, tau, scores=False))

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return (3 if self.fine_log else 2) * self.K + (self.K if self.self_condition else 0)

    @property
    def out_channels(self) -> int:
        return self.K

    def features(self, loglik: Tensor, estimate: Optional[Tensor] = None) -> Tensor:
        """Network input from the local evidence ``loglik (B, L, K)``: the local posterior under a
        flat prior and its log, clamped and scaled, ``(B, L, 2K)`` float32; with :attr:`fine_log`
        also the log clamped at -4 nats, ``(B, L, 3K)``. The coarse log tells a nearly decided
        position from a decided one, the fine one resolves the differences of a few tenths of a
        nat between categories where tokens get decided (docs/design.md, input features). With
        :attr:`self_condition`, K more channels: ``estimate (B, L, K)``, a posterior, or zeros."""
        logpost = torch.log_softmax(loglik, dim=-1)
        parts = [logpost.exp(), logpost.clamp_min(_FEATURE_FLOOR) / _FEATURE_SCALE]
        if self.fine_log:
            parts.append(logpost.clamp_min(_FINE_FLOOR) / _FINE_SCALE)
        if self.self_condition:  # the posterior estimate, or zeros where there is none
            parts.append(torch.zeros_like(logpost) if estimate is None else estimate.to(logpost.dtype))
        return torch.cat(parts, dim=-1).float()

    def correction(self, model: ModelFn, loglik: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """The network's correction ``(B, L, K)`` at local evidence ``loglik (B, L, K)`` and public
        time ``t (B,)``. With :attr:`self_condition` the network also reads a posterior estimate:
        inside a sampling run (``model`` is the run's :class:`ExtrapolatedCorrection`) the
        posterior it formed at the previous call, as analog bits and CDCD sample (one call per
        step); otherwise (training's other half, the ODE bound, a run's first call) its own first
        pass on a zero estimate, so the drift stays a function of (v, t) and the bound valid."""
        if not self.self_condition:
            return model(self.features(loglik), t.float(), cond)
        memory = model if isinstance(model, ExtrapolatedCorrection) else None
        est = None if memory is None else memory.estimate
        if est is None or est.shape != loglik.shape:
            est = self._first_pass(model if memory is None else memory.raw, loglik, t, cond)
        c = model(self.features(loglik, est), t.float(), cond)
        if memory is not None:  # the network's own posterior, not the extrapolated one
            memory.estimate = torch.softmax(self.posterior_logits(loglik, memory.previous), -1).detach()
        return c

    def _first_pass(self, model: ModelFn, loglik: Tensor, t: Tensor, cond: Optional[Tensor]) -> Tensor:
        """The posterior ``(B, L, K)`` of the network's pass on a zero estimate (self-conditioning)."""
        return torch.softmax(self.posterior_logits(loglik, model(self.features(loglik), t.float(), cond)), -1)

    def loss(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
             pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> LossOutput:
        """The template loss; with :attr:`self_condition`, half of the batch (a fair coin per
        sequence) reads the network's own first-pass posterior, computed without gradient, and the
        other half a zero estimate (analog bits' recipe)."""
        if not self.self_condition:
            return super().loss(model, x0, cond=cond, pad_mask=pad_mask, generator=generator)
        t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        noisy = self.sample_noisy(x0, t, generator=generator)
        loglik = self.local_loglik(noisy.xt, self.native_time(t))
        est = torch.zeros_like(loglik)
        use = _rng.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
        if bool(use.any()):
            with torch.no_grad():
                est[use] = self._first_pass(model, loglik[use], t[use], None if cond is None else cond[use])
        output = self.posterior_logits(loglik, model(self.features(loglik, est), t.float(), cond))
        return reduce_terms(self.loss_terms(output, x0, noisy), pad_mask)

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return self.features(self.local_loglik(xt, self.native_time(t)))

    @staticmethod
    def posterior_logits(loglik: Tensor, correction: Tensor) -> Tensor:
        """Residual logits ``(B, L, K)`` float64: local evidence plus the centred correction."""
        c = _FlushTinyGrad.apply(correction).double()
        return loglik - loglik.amax(-1, keepdim=True) + (c - c.mean(-1, keepdim=True))

    def sampling_model(self, model: ModelFn) -> ModelFn:
        """``model`` in a fresh :class:`ExtrapolatedCorrection` when :attr:`extrapolate` > 0 or
        :attr:`self_condition` (posterior output, a network that returns a correction: not one
        that reads the raw state); with alpha 0 the wrapper only keeps the run's estimate."""
        if not (self.extrapolate or self.self_condition) or self.output != "posterior" or takes_raw_state(model):
            return model
        return ExtrapolatedCorrection(model, self.extrapolate)

    def model_output(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Posterior logits ``(B, L, K)`` float64 of p(x0 | xt)."""
        if takes_raw_state(model):
            return model(xt, t, cond)
        loglik = self.local_loglik(xt, self.native_time(t))
        return self.posterior_logits(loglik, self.correction(model, loglik, t, cond))

    def score_from_output(self, output: Tensor, v: Tensor, tau: Tensor) -> Tensor:
        """Posterior logits ``(B, L, K)`` at sticks ``v`` -> stick score d/dv log p_tau(v), float64."""
        return mixture_score(torch.softmax(output.double(), dim=-1), self.stick_stats(v, tau))

    # ------------------------------------------------------------------ forward process
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        a = torch.as_tensor(self.a, dtype=torch.float64, device=device).expand(*shape, self.K - 1)
        b = torch.as_tensor(self.b, dtype=torch.float64, device=device).expand(*shape, self.K - 1)
        return beta_sample(a, b, generator=generator).clamp(self.eps, 1 - self.eps)

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        """``(B,)`` float64 public times from ``train_times``: stratified uniform, except that a
        fraction ``focus`` of the batch is drawn uniformly from the focus window."""
        G = self.n_train_times
        if not G:
            raise ValueError("the posterior jacobi process trains on a time grid (n_train_times >= 1)")
        # the grid and its focus law live on the CPU; a CUDA generator's draws are brought there
        u = super().sample_time(batch, generator=generator, device=torch.device("cpu")).double()
        rows = (u * G).long().clamp_max(G - 1)
        return self.train_times[self.focused_rows(rows, generator=generator)].to(device)

    def focused_rows(self, rows: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """Training-grid rows ``(B,)`` with a random fraction ``focus`` replaced by rows drawn
        from the focus law: uniformly from the window [focus_tau_min, focus_tau_max] (native
        time), or with the probabilities :attr:`entropy_focus`."""
        if self.focus <= 0:
            return rows
        batch = rows.shape[0]
        if self.focus_law == "entropy":
            cdf = torch.cumsum(self.entropy_focus, 0)
            u = _rng.rand(batch, generator=generator, dtype=torch.float64, device=rows.device) * cdf[-1]
            pick = torch.searchsorted(cdf, u).clamp_max(len(cdf) - 1)
        else:
            tau = self.native_time(self.train_times)
            window = torch.nonzero((tau >= self.focus_tau_min) & (tau <= self.focus_tau_max)).flatten()
            if not len(window):
                return rows
            pick = window[_rng.randint(0, len(window), (batch,), generator=generator, device=rows.device)]
        return torch.where(_rng.rand(batch, generator=generator, device=rows.device) < self.focus, pick, rows)

    @cached_property
    def local_entropy(self) -> Tensor:
        """``(G,)`` float64 H(tau) / log K at the training-grid rows: the expected entropy of the
        local evidence's posterior softmax(log q_tau(v | k)), x0 iid uniform, made monotone in
        time (0: decided, 1: no information). Estimated once from exact noisy draws with a fixed
        private seed (the caller's random streams are not touched)."""
        t = self.train_times
        g = torch.Generator().manual_seed(20231)
        n = max(32, min(512, 4096 // self.K))  # positions per row: K = 4 -> 512, K = 65 -> 63 (~3 s)
        x0 = torch.randint(0, self.K, (len(t), n), generator=g)
        v = self.sample_noisy(x0, t, generator=g).xt
        logpost = torch.log_softmax(self.local_loglik(v, self.native_time(t)), dim=-1)
        H = np.maximum.accumulate((-(logpost.exp() * logpost).sum(-1)).mean(-1).numpy())
        return torch.from_numpy(H / math.log(self.K))

    @cached_property
    def entropy_focus(self) -> Tensor:
        """``(G,)`` float64 probabilities of the training-grid rows, proportional to the rise of
        :attr:`local_entropy` across each cell: the local information that the forward process
        removes there."""
        H = self.local_entropy.numpy()
        edges = np.concatenate([[H[0]], 0.5 * (H[1:] + H[:-1]), [H[-1]]])
        mass = np.diff(edges)
        if mass.sum() <= 0:
            mass = np.ones_like(mass)
        return torch.from_numpy(mass / mass.sum())

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        """Exact draw of the sticks ``(B, L, K-1)`` given ``x0 (B, L)``: lineage counts of every
        stick in one vectorised draw, then one Beta draw per stick."""
        B, L = x0.shape
        _, lineage, rows = self._tables_at(self.native_time(t), draws=True)
        m = lineage.draw_m(rows.repeat_interleave(L), generator=generator)
        v = draw_sticks(x0.reshape(-1), m, self.a, self.b, generator=generator)
        return NoisySample(xt=v.reshape(B, L, self.K - 1).clamp(self.eps, 1 - self.eps), t=t)

    def conditional_score(self, x0: Tensor, v: Tensor, tau: Tensor, *,
                          windows: Optional[Callable[[int, Tensor], Optional[LineageWindows]]] = None) -> Tensor:
        """Exact d/dv log q_tau(v | x0), ``(B, L, K-1)`` float64, element by element.

        ``windows(i, mask)``: stick ``i``'s tabulated lineage windows for the elements in ``mask``
        (None: computed from the times)."""
        B, L = x0.shape
        k = x0.reshape(-1)
        vf = v.reshape(B * L, self.K - 1)
        out = torch.empty_like(vf)
        win = windows or (lambda i, mask: None)
        for i, ti in enumerate(self._stick_times(tau, L)):
            a, b = float(self.a[i]), float(self.b[i])
            y = vf[:, i]
            out[:, i] = (a - 1.0) / y - (b - 1.0) / (1.0 - y)  # stationary sticks (k < i)
            at_one, at_zero = k == i, k > i
            if at_one.any():
                y1 = y[at_one]
                _, mm = stats_at_one(y1, ti[at_one], a, b, windows=win(i, at_one))
                out[at_one, i] = (a - 1.0 + mm) / y1 - (b - 1.0) / (1.0 - y1)
            if at_zero.any():
                y0 = y[at_zero]
                _, mm = stats_at_one(1.0 - y0, ti[at_zero], b, a, windows=win(i, at_zero))
                out[at_zero, i] = (a - 1.0) / y0 - (b - 1.0 + mm) / (1.0 - y0)
        return out.reshape(B, L, self.K - 1)

    def _stick_times(self, tau: Tensor, L: int) -> list[Tensor]:
        """Per stick, the native time of every element ``(B * L,)`` (speed s_i times tau)."""
        flat = tau.double().repeat_interleave(L)
        return [flat * float(sp) for sp in self.speed]

    def conditional_logpdf_all(self, v: Tensor, tau: Tensor) -> Tensor:
        """log q_tau(v | k) for every category k: ``(B, L, K)`` float64, exact (element by element)."""
        B, L, _ = v.shape
        vf = v.reshape(B * L, self.K - 1)
        zero, one, stat = [], [], []
        for i, ti in enumerate(self._stick_times(tau, L)):
            a, b = float(self.a[i]), float(self.b[i])
            y = vf[:, i]
            one.append(stats_at_one(y, ti, a, b)[0])
            zero.append(stats_at_one(1.0 - y, ti, b, a)[0])
            stat.append(torch.distributions.Beta(a, b).log_prob(y))
        stats = {name: torch.stack(z, -1).reshape(B, L, -1)
                 for name, z in (("logp_zero", zero), ("logp_one", one), ("logp_stat", stat))}
        return category_loglik(stats)

    def stationary_logpdf(self, v: Tensor) -> Tensor:
        """log density of the prior (product of Beta(a_i, b_i)) of sticks ``v (B, L, K-1)`` -> ``(B,)``."""
        a = torch.as_tensor(self.a, dtype=v.dtype, device=v.device)
        b = torch.as_tensor(self.b, dtype=v.dtype, device=v.device)
        return torch.distributions.Beta(a, b).log_prob(v).sum((-1, -2))

    # ------------------------------------------------------------------ training
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        """Cross-entropy ``(B, L)`` of the posterior logits ``output (B, L, K)`` on x0."""
        return F.cross_entropy(output.reshape(-1, self.K), x0.reshape(-1), reduction="none").reshape(x0.shape).float()

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """Logits of the point-mass posterior at ``x0``."""
        one_hot = F.one_hot(x0, self.K).bool()
        return torch.where(one_hot, 0.0, -1e4).double()

    # ------------------------------------------------------------------ reverse process
    def time_grid(self, steps: int, *, device: Optional[torch.device] = None) -> Tensor:
        if self.grid_focus > 0:
            grid = self._focused_grid(steps).to(device=device, dtype=torch.get_default_dtype())
        else:
            grid = torch.linspace(1.0, self._t_end, steps + 1, device=device)
        return grid

    def prepare_steps(self, pairs: Sequence[tuple[Tensor, Tensor, float]]) -> None:
        """Tabulate every sub-step time that ``step`` will visit on ``pairs`` in one table build
        (~0.5 s for 200 times, against ~14 ms each built one by one, which a dilated run of
        thousands of sub-step times also overflows the table cache with)."""
        if self.substeps > 1 and self.output == "posterior" and len(pairs):
            visited = torch.cat([torch.stack(self._substep_times(t.reshape(1), s.reshape(1))[:-1])
                                 for t, s, _ in pairs]).reshape(-1)
            for chunk in visited.split(1024):  # bounds one build's temporaries; lookups scan few tables
                self._tables_at(self.native_time(chunk))

    def _focused_grid(self, steps: int, w: Optional[float] = None) -> Tensor:
        """``(steps + 1,)`` float64 public times from 1 to the end time at equal steps of the
        mixture CDF (1 - w) U(t) + w E(t): U uniform on [t_end, 1], E the entropy law's CDF
        (piecewise linear over the training cells, restricted to [t_end, 1]); ``w`` defaults to
        :attr:`grid_focus`."""
        lo, t_end = math.sqrt(self.t_train_min / self.T), self._t_end
        w = self.grid_focus if w is None else float(w)
        edges = np.linspace(lo, 1.0, len(self.entropy_focus) + 1)
        cdf = np.concatenate([[0.0], np.cumsum(self.entropy_focus.numpy())])
        t = np.linspace(t_end, 1.0, 8193)
        ent = np.interp(t, edges, cdf)
        ent = (ent - ent[0]) / max(ent[-1] - ent[0], 1e-300)
        mix = (1.0 - w) * (t - t_end) / (1.0 - t_end) + w * ent  # strictly increasing for w < 1
        grid = np.interp(np.linspace(1.0, 0.0, steps + 1), mix, t)
        grid[0], grid[-1] = 1.0, t_end
        return torch.from_numpy(grid)

    def _substep_times(self, t: Tensor, s: Tensor) -> list[Tensor]:
        """Public times ``(B,)`` float64 from ``t`` to ``s`` in :attr:`substeps` equal sub-steps
        (the one formula that :meth:`time_grid` tabulates and :meth:`step` walks)."""
        t, s = t.double(), s.double()
        n = self.substeps if self.output == "posterior" else 1
        return [t] + [t + (s - t) * (j / n) for j in range(1, n)] + [s]

    def _stick_params(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        as_t = lambda arr: torch.as_tensor(arr, dtype=torch.float64, device=v.device)  # noqa: E731
        return as_t(self.a), as_t(self.b), as_t(self.speed)

    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """Reverse SDE from tau(t) to tau(s) (times ``dilation``, a float or ``(B,)``) in
        :attr:`substeps` Euler-Maruyama sub-steps, with the score implied by ``output``:

        dv = s_i [ (a (1 - v) - b v) / 2 - (1 - 2 v) - v (1 - v) score ] (-dtau)
             + sqrt(s_i dtau v (1 - v)) dW

        Sub-steps after the first re-form the posterior logits as the exact local evidence at the
        new sticks plus the network's correction at ``(xt, t)``, held fixed: the evidence changes
        fast near a vertex, the correction (what the rest of the sequence says) slowly.
        """
        times = self._substep_times(t, s)
        v, logits, correction = xt, output, None
        for j, (tj, sj) in enumerate(zip(times[:-1], times[1:])):
            tau = self.native_time(tj)
            if len(times) > 2:  # one table pass gives the evidence and the scores
                stats = self.stick_stats(v, tau)
                if j == 0:
                    correction = output.double() - category_loglik(stats)
                else:
                    logits = category_loglik(stats) + correction
                score = mixture_score(torch.softmax(logits.double(), dim=-1), stats)
            else:
                score = self.score_from_output(logits, v, tau)
            v = self.score_step(score, v, tj, sj, generator=generator, dilation=dilation)
        output = logits
        if self.final_draw and bool((s.double() <= self._t_end + 1e-12).all()):
            # The reverse process ends with x0 ~ p(x0 | v_{t_min}): draw the tokens from the
            # posterior (float64) instead of reading the argmax of a nearly-decided simplex point.
            # The logits are those of the last sub-step, one sub-step before t_min; that sub-step
            # moves them by less than the posterior's own uncertainty at t_min.
            tokens = sample_categorical(torch.softmax(output.double(), -1), generator=generator)
            v = self.vertex_sticks(tokens, like=v)
        return v

    def score_step(self, score: Tensor, v: Tensor, t: Tensor, s: Tensor, *,
                   generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """The Euler-Maruyama update of :meth:`step` given the stick score ``(B, L, K-1)`` itself
        (no final draw): for samplers that edit the posterior before forming the score, e.g. the
        constraint-aware Sudoku sampler, whose boards sit at different times (``t``, ``s``,
        ``dilation`` per board)."""
        tau = self.native_time(t)
        dil = torch.as_tensor(dilation, dtype=torch.float64, device=v.device)
        dtau = ((tau - self.native_time(s)) * dil)[:, None, None]
        a, b, sp = self._stick_params(v)
        drift = sp * (0.5 * (a * (1 - v) - b * v) - (1 - 2 * v) - v * (1 - v) * score)
        noise = _rng.randn(v.shape, generator=generator, dtype=torch.float64, device="cpu").to(v.device)
        return (v - drift * dtau + torch.sqrt(sp * dtau * v * (1 - v)) * noise).clamp(self.eps, 1 - self.eps)

    @property
    def _t_end(self) -> float:
        return math.sqrt(self.t_min / self.T)

    def vertex_sticks(self, tokens: Tensor, *, like: Tensor) -> Tensor:
        """Sticks ``(B, L, K-1)`` (within eps of the vertex) that decode to ``tokens (B, L)``."""
        i = torch.arange(self.K - 1, device=tokens.device)
        k = tokens[..., None]
        fill = lambda x: torch.full((), x, dtype=like.dtype, device=like.device)  # noqa: E731  (no float32 rounding of eps)
        return torch.where(i < k, fill(self.eps), torch.where(i == k, fill(1.0 - self.eps), fill(0.5)))

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Replace known positions by an exact draw of q_tau(v | x0): the network then sees them
        as it saw data in training, unlike a reset to the clean vertex."""
        fresh = self.sample_noisy(x0.clamp(0, self.K - 1), t, generator=generator).xt
        return torch.where(known[..., None], fresh, xt)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """Argmax of the posterior logits."""
        return output.argmax(-1)

    def decode(self, xt: Tensor) -> Tensor:
        return sticks_to_simplex(xt).argmax(-1)

    def is_valid(self, xt: Tensor) -> bool:
        return (xt.dim() == 3 and xt.shape[-1] == self.K - 1 and xt.dtype == torch.float64
                and bool(((xt > 0) & (xt < 1)).all()))

    # ------------------------------------------------------------------ likelihood
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 200, divergence: str = "hutchinson", t_start: Optional[float] = None,
                       probe: str = "fresh", bound: str = "ode") -> Tensor:
        """Upper bound on -log2 P(x0) per token from the probability-flow ODE (``bound="ode"``) or
        from the reverse SDE (``bound="sde"``, :mod:`ddsm.processes._sde_likelihood`: a Girsanov
        bound on the sampler's own process, one forward pass per time cell, about 4x cheaper than
        the ODE's at the same ``steps`` (bench/ode_convergence.py), not biased low by few cells;
        on bench/entropy.py's chain it was ~0.01 bits/token looser than the converged ODE's).

        -log P(x0) <= E_{v ~ q(v | x0, tau0)} [ -log p_theta,tau0(v) + sum_l log sum_k q(v_l | k, tau0) ]
        (a variational bound with the Bayes decoder r(x0 | v) under a uniform prior); the
        continuous log-density comes from the instantaneous change of variables along the ODE
        from tau0 to T, plus the stationary prior at T.

        ``steps``: Heun steps of the ODE. Too few make the bound biased *low* (with the exact score,
        50 steps: -0.05 bits/token at K = 4, -0.30 at K = 65), so the default is 200;
        ``bench/entropy.py`` prints the change from ``steps`` to ``2 * steps`` as the error estimate.
        ``t_start``: the native time tau0 (default ``t_min``); every tau0 in (0, T) gives a valid
        bound, a later one hides score error near the data rather than removing it.
        ``probe``: Hutchinson's probe, ``"fresh"`` at every evaluation (default) or ``"fixed"``
        along the trajectory (``ddsm.processes._ode_likelihood``).
        """
        if pad_mask is not None and not bool(pad_mask.all()):
            raise ValueError("likelihoods of padded sequences are not supported by the jacobi process")
        if bound not in self.likelihood_bounds:
            raise ValueError(f"bound must be one of {', '.join(self.likelihood_bounds)}, got {bound!r}")
        if bound == "sde":
            if t_start is not None:
                raise ValueError("t_start applies to the ODE bound only")
            return sde_bits_per_token(self, model, x0, cond=cond, steps=steps, generator=generator)
        tau0 = self.t_min if t_start is None else float(t_start)
        if not 0.0 < tau0 < self.T:
            raise ValueError(f"t_start must be a native time in (0, T = {self.T}), got {t_start}")
        B, L = x0.shape
        t0 = torch.full((B,), math.sqrt(tau0 / self.T), dtype=torch.float64, device=x0.device)
        v0 = self.sample_noisy(x0, t0, generator=generator).xt
        log_p = ode_log_density(self, model, v0, t0, cond=cond, steps=steps, divergence=divergence,
                                probe=probe, generator=generator)
        log_norm = torch.logsumexp(self.conditional_logpdf_all(v0, self.native_time(t0)), dim=-1).sum(-1)
        nll = -log_p + log_norm
        return nll / (L * math.log(2.0))

    def drift_parts(self, model: ModelFn, v: Tensor, u: Tensor, cond: Optional[Tensor] = None, *,
                    split: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """Native-time probability-flow drift ``(B, L, K-1)`` float64 at sticks ``v`` (a float64
        leaf that requires grad) and public time ``u (B,)``, and (with ``split``) the same drift
        with the network's correction held fixed (None when not asked for or when the output
        cannot be split, e.g. an exact model).

        The second part depends on each position's own sticks only (the exact local evidence and
        stick statistics), so its Jacobian is block-diagonal and its divergence exact at K - 1
        backward passes; only the network's part is left to Hutchinson's estimator
        (``ddsm.processes._ode_likelihood``), which removes the within-position noise."""
        tau = self.native_time(u)
        if not split or takes_raw_state(model):
            out = self.model_output(model, v, u.float(), cond)
            return self.prob_flow_drift(self.score_from_output(out, v, tau), v), None
        loglik = self.local_loglik(v, tau)
        c = self.correction(model, loglik, u, cond)
        full = self.score_from_output(self.posterior_logits(loglik, c), v, tau)
        local = self.score_from_output(self.posterior_logits(loglik, c.detach()), v, tau)
        return self.prob_flow_drift(full, v), self.prob_flow_drift(local, v)

    def prob_flow_drift(self, score: Tensor, v: Tensor) -> Tensor:
        """Native-time drift of the probability-flow ODE (forward in tau), ``(B, L, K-1)``:
        s_i [ (a (1 - v) - b v) / 2 - (1 - 2 v) / 2 - v (1 - v) score / 2 ]."""
        a, b, sp = self._stick_params(v)
        return sp * (0.5 * (a * (1 - v) - b * v) - 0.5 * (1 - 2 * v) - 0.5 * v * (1 - v) * score)
