"""DDSM's Jacobi process with a posterior-parameterised network (used by the Sudoku model).

Same forward process, clocks, reverse SDE and time dilation as :class:`JacobiProcess`; only the
meaning of the network changes. The network sees the *local* evidence of every position, the
log-likelihoods log q_tau(v_l | k) of its sticks under each clean category k (normalised over k),
and returns logits of the clean-token posterior p(x0_l = k | v). The stick score then follows
exactly from the mixture identity (p_tau(v) = sum_x0 p(x0) prod_l q_tau(v_l | x0_l)):

    d/dv_l log p_tau(v) = sum_k p(x0_l = k | v) d/dv_l log q_tau(v_l | k),

and per stick i the category-conditional score is the vertex-1 score if k = i, the vertex-0 score
if k > i and the stationary score if k < i. Why:

- the posterior is a function of the likelihood table that commutes with relabelling the
  categories whenever the data law does (Sudoku digits), so the network can be exactly
  equivariant, although the stick-breaking process itself is not symmetric in the categories;
- constraints are exact and cheap: an excluded category gets posterior zero, a known one
  posterior one (the score then drives that position along the exact conditional reverse path);
- training is cross-entropy on x0, minimised by the same posterior that gives DDSM's exact score.

The model output passed to ``step`` is the raw stick score in float64 (not DDSM's normalised
score), so ``score_from_output`` is the identity here.

Self-conditioning (``self_condition=True``): the network also sees its previous posterior
estimate (zeros: none). As for analog bits, the state carries it, ``concat(sticks, estimate)``
``(B, L, K - 1 + K)``, and the model output carries the new one, ``concat(score, posterior)``
``(B, L, K - 1 + K)``, so ``step`` stays a pure function of (output, state). Training feeds, on a
random half of the batch, the stop-gradient posterior of a first pass made with no estimate. Per-stick statistics come from
:mod:`ddsm.special.stick_tables` (exact values tabulated per time).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng as _rng
from ..processes.base import LossOutput, ModelFn, NoisySample, reduce_terms
from ..processes.jacobi import JacobiProcess
from ..special.stick_posterior import category_loglik, mixture_score
from ..special.stick_tables import LineageQuantiles, StickTables, TableCache, draw_sticks


class PosteriorJacobiProcess(JacobiProcess):
    """Jacobi diffusion (DDSM) whose network predicts p(x0 | x_t) from local log-likelihoods."""

    name = "jacobi_posterior"
    final_draw = False  # its model output is the stick score (constraint-aware samplers decode themselves)
    description = ("DDSM Jacobi diffusion; the network maps local log-likelihoods to the clean-token "
                   "posterior, and the exact score follows by the mixture identity")

    def __init__(self, K: int, T: float = 5.0, t_min: float = 0.01, t_train_min: float = 0.004,
                 speed_balanced: bool = True, eps: float = 1e-5, n_train_times: int = 128,
                 focus: float = 0.0, focus_tau_min: float = 0.3, focus_tau_max: float = 3.5,
                 self_condition: bool = False) -> None:
        """
        Args:
            K, T, t_min, t_train_min, speed_balanced, eps: as for :class:`JacobiProcess`.
            n_train_times: training times are drawn from this many fixed public times (uniform in
                t on [sqrt(t_train_min / T), 1]), so their statistics are tabulated once.
            focus: fraction of training times drawn only from native times in
                [focus_tau_min, focus_tau_max] (time importance sampling: elsewhere the local
                evidence alone is either decisive or nearly nothing is learnable). Cross-entropy
                is minimised by the true posterior at every time, so this only moves effort.
        """
        super().__init__(K, T=T, t_min=t_min, t_train_min=t_train_min, speed_balanced=speed_balanced, eps=eps,
                         n_train_times=0)  # its own grid (float64 times, tabulated statistics) below
        self.n_train_times = int(n_train_times)
        if not 0.0 <= focus <= 1.0:
            raise ValueError(f"focus must lie in [0, 1], got {focus}")
        self.focus, self.focus_tau_min, self.focus_tau_max = float(focus), float(focus_tau_min), float(focus_tau_max)
        self.self_condition = bool(self_condition)
        self._tables = TableCache(self.a, self.b, self.speed)
        self._quantiles: OrderedDict[float, LineageQuantiles] = OrderedDict()

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return 2 * self.K if self.self_condition else self.K

    @property
    def out_channels(self) -> int:
        return self.K

    # ------------------------------------------------------------------ state layout
    def sticks(self, xt: Tensor) -> Tensor:
        """The stick coordinates ``(B, L, K-1)`` of a state (which may carry an estimate after them)."""
        return xt[..., : self.K - 1]

    def estimate(self, xt: Tensor) -> Optional[Tensor]:
        """The previous posterior estimate ``(B, L, K)`` carried by a state (None without self-conditioning)."""
        return xt[..., self.K - 1 :] if self.self_condition else None

    def _with_estimate(self, v: Tensor, probs: Optional[Tensor]) -> Tensor:
        """State from sticks ``v (B, L, K-1)`` and a posterior ``probs (B, L, K)`` (zeros if None)."""
        if not self.self_condition:
            return v
        est = v.new_zeros(*v.shape[:-1], self.K) if probs is None else probs.to(v.dtype)
        return torch.cat([v, est], dim=-1)

    def network_input(self, feats: Tensor, estimate: Optional[Tensor]) -> Tensor:
        """Network input from local log-posteriors ``feats (B, L, K)`` and a previous estimate
        ``(B, L, K)`` (None: none yet): ``(B, L, in_channels)`` float32."""
        if not self.self_condition:
            return feats
        est = torch.zeros_like(feats) if estimate is None else estimate.to(feats.dtype)
        return torch.cat([feats, est], dim=-1)

    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        """Stationary sticks, with a zero estimate under self-conditioning."""
        return self._with_estimate(super().prior(shape, generator=generator, device=device), None)

    def decode(self, xt: Tensor) -> Tensor:
        return super().decode(self.sticks(xt))

    def is_valid(self, xt: Tensor) -> bool:
        return super().is_valid(self.sticks(xt))

    # ------------------------------------------------------------------ training times
    # ``train_times`` (the grid's float64 public times) is JacobiProcess's.

    @cached_property
    def _train_tables(self) -> StickTables:
        return StickTables(self.native_time(self.train_times).numpy(), self.a, self.b, self.speed)

    @cached_property
    def _train_quantiles(self) -> LineageQuantiles:
        return LineageQuantiles(self.native_time(self.train_times).numpy(), self.a, self.b, self.speed)

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        """``(B,)`` float64 public times from ``train_times``: uniformly, except that a fraction
        ``focus`` is drawn uniformly from the focus window."""
        rows = torch.randint(0, self.n_train_times, (batch,), generator=generator)
        return self.train_times[self.focused_rows(rows, generator=generator)].to(device)

    def _train_rows(self, t: Tensor) -> Optional[Tensor]:
        """Rows of ``train_times`` equal to ``t (B,)``, or None if some t is off the grid."""
        grid = self.train_times.to(t.device)
        rows = torch.searchsorted(grid, t.double().contiguous()).clamp_max(len(grid) - 1)
        return rows if bool((grid[rows] == t.double()).all()) else None

    # ------------------------------------------------------------------ per-stick statistics
    def stick_stats(self, v: Tensor, t: Tensor) -> dict[str, Tensor]:
        """Exact (tabulated) log-densities and scores of sticks ``v (B, L, K-1)`` at public ``t (B,)``
        under each relation to a clean category; each entry ``(B, L, K-1)`` float64 (see
        :meth:`StickTables.stats`)."""
        B, L, K1 = v.shape
        flat = v.reshape(B * L, K1).double()
        rows = self._train_rows(t)
        if rows is not None:
            out = self._train_tables.stats(flat, rows.repeat_interleave(L))
        elif bool((t == t[0]).all()):
            table = self._tables.get(float(self.native_time(t[:1])[0]))
            out = table.stats(flat, torch.zeros(B * L, dtype=torch.long, device=v.device))
        else:  # mixed off-grid times: one table per board (slow path, not used in sampling)
            parts = [self.stick_stats(v[b : b + 1], t[b : b + 1]) for b in range(B)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return {k: x.reshape(B, L, K1) for k, x in out.items()}

    def prepare_times(self, t: Tensor) -> None:
        """Tabulate the statistics of many public times ``t`` at once (e.g. a sampling grid)."""
        self._tables.prepare(self.native_time(t.double().cpu()).numpy())

    #: log q(v_l | k) for every category, ``(B, L, K)``, from per-stick statistics (shared maths)
    category_loglik = staticmethod(category_loglik)
    #: stick score ``(B, L, K-1)`` from the clean-token posterior ``(B, L, K)`` (shared maths)
    mixture_score = staticmethod(mixture_score)

    # ------------------------------------------------------------------ network calls
    def features(self, stats: dict[str, Tensor]) -> Tensor:
        """Network input: the local log-posterior under a flat prior, ``(B, L, K)`` float32."""
        return torch.log_softmax(self.category_loglik(stats), dim=-1).float()

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return self.network_input(self.features(self.stick_stats(self.sticks(xt), t)), self.estimate(xt))

    def posterior_logits(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None,
                         stats: Optional[dict[str, Tensor]] = None) -> Tensor:
        """Logits of p(x0 | xt): ``(B, L, K)`` float64."""
        stats = self.stick_stats(self.sticks(xt), t) if stats is None else stats
        return model(self.network_input(self.features(stats), self.estimate(xt)), t.float(), cond).double()

    def model_output(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """The stick score ``(B, L, K-1)`` float64 implied by the network's posterior (followed by
        the posterior itself, ``(B, L, K-1 + K)``, under self-conditioning)."""
        if getattr(model, "takes_state", False):
            return model(xt, t, cond)
        stats = self.stick_stats(self.sticks(xt), t)
        probs = torch.softmax(self.posterior_logits(model, xt, t, cond, stats), dim=-1)
        score = self.mixture_score(probs, stats)
        return torch.cat([score, probs], dim=-1) if self.self_condition else score

    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float = 1.0) -> Tensor:
        """DDSM's Euler-Maruyama step on the sticks; under self-conditioning the output's posterior
        becomes the state's estimate."""
        v = self.stick_step(output[..., : self.K - 1], self.sticks(xt), t, s, generator=generator, dilation=dilation)
        return self._with_estimate(v, output[..., self.K - 1 :] if self.self_condition else None)

    def stick_step(self, score: Tensor, v: Tensor, t: Tensor, s: Tensor, *,
                   generator: Optional[torch.Generator] = None, dilation: Union[float, Tensor] = 1.0) -> Tensor:
        """DDSM's Euler-Maruyama step of the sticks ``v (B, L, K-1)`` alone, given their score
        ``(B, L, K-1)`` (samplers that keep the estimate themselves, e.g. the constraint-aware one,
        whose boards may sit at different times: ``dilation`` may be ``(B,)``)."""
        return super().step(score, v, t, s, generator=generator, dilation=dilation)

    def score_from_output(self, output: Tensor, v: Tensor, tau: Tensor) -> Tensor:
        return output.double()

    def output_from_score(self, score: Tensor, v: Tensor, tau: Tensor) -> Tensor:
        return score

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return self.conditional_score(x0, xt, self.native_time(t))

    # ------------------------------------------------------------------ forward process
    def _quantiles_at(self, t: Tensor) -> tuple[LineageQuantiles, Tensor]:
        """Quantile tables covering public times ``t (B,)`` and each board's row in them."""
        rows = self._train_rows(t)
        if rows is not None:
            return self._train_quantiles, rows
        uniq, inv = torch.unique(t.double().cpu(), return_inverse=True)
        key = float(uniq[0]) if len(uniq) == 1 else None
        if key is not None and key in self._quantiles:
            return self._quantiles[key], inv.to(t.device)
        q = LineageQuantiles(self.native_time(uniq).numpy(), self.a, self.b, self.speed)
        if key is not None:  # sampling asks for the same single times again and again
            self._quantiles[key] = q
            if len(self._quantiles) > 1024:
                self._quantiles.popitem(last=False)
        return q, inv.to(t.device)

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        """Exact draw of the sticks ``(B, L, K-1)`` given ``x0 (B, L)`` (no regression target:
        the loss is cross-entropy on x0)."""
        B, L = x0.shape
        quant, rows = self._quantiles_at(t)
        m = quant.draw_m(rows.repeat_interleave(L), generator=generator)
        v = draw_sticks(x0.reshape(-1), m, self.a, self.b, generator=generator)
        return NoisySample(xt=v.reshape(B, L, self.K - 1).clamp(self.eps, 1 - self.eps), t=t)

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Redraw only the known positions from q_tau(v | x0) (DDSM's way of imposing givens)."""
        if not bool(known.any()):
            return xt
        b, l = torch.nonzero(known, as_tuple=True)
        fresh = self.sample_noisy(x0[b, l][:, None].clamp(0, self.K - 1), t[b], generator=generator).xt[:, 0]
        out = xt.clone()
        out[b, l, : self.K - 1] = fresh
        return out

    # ------------------------------------------------------------------ training
    def loss(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
             pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> LossOutput:
        """Cross-entropy of the network's posterior on the clean tokens, per token ``(B, L)``.

        Under self-conditioning, a random half of the batch first gets the (stop-gradient)
        posterior of a pass with no estimate, as its estimate."""
        t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        noisy = self.sample_noisy(x0, t, generator=generator)
        feats = self.features(self.stick_stats(noisy.xt, t))
        est = None
        if self.self_condition:
            est = torch.zeros_like(feats)
            use = _rng.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            if bool(use.any()):
                sub = None if cond is None else cond[use]
                with torch.no_grad():
                    first = model(self.network_input(feats[use], None), t[use].float(), sub)
                est[use] = torch.softmax(first.float(), dim=-1)
        logits = model(self.network_input(feats, est), t.float(), cond)
        terms = F.cross_entropy(logits.float().reshape(-1, self.K), x0.reshape(-1), reduction="none")
        return reduce_terms(terms.reshape(x0.shape), pad_mask)

    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        """Cross-entropy terms ``(B, L)`` of posterior logits ``output (B, L, K)``."""
        return F.cross_entropy(output.float().reshape(-1, self.K), x0.reshape(-1), reduction="none").reshape(x0.shape)
