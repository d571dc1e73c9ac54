"""Reward-guided sampling for every process: sequential Monte Carlo and value-guided decoding.

Target: the tilted law p_alpha(x0) = p_theta(x0) exp(r(x0) / alpha) / Z, for a reward r on clean
sequences and a temperature alpha > 0 (alpha -> infinity: the model itself). Neither method needs
gradients, so masked, uniform, discrete-FM and autoregressive models can be steered as well as the
simplex processes; both only need what every process has: ``step`` on the network's output and
``predict_tokens`` (the clean sequence the output predicts).

**SMC** (twisted by the predicted clean sequence, as in twisted diffusion samplers and the SMC
baselines of DRAKES / SVDD). P particles per design run the model's own reverse kernel. At each
network call the particle's value is r_hat(x_t) = r(predict_tokens(output)); its log-weight grows by
(r_hat(x_t) - r_hat(x_prev)) / alpha, and at the end by (r(x0) - r_hat(x_last)) / alpha, so the
weights telescope to exp(r(x0) / alpha): the importance weight of the tilted law against the model's
paths. When a group's effective sample size falls below ``ess_threshold * P`` it is resampled
(systematic resampling, one uniform per group) and its weights reset. One particle per group is
returned, drawn by its final weight. As P grows the designs follow p_alpha exactly
(``tests/unit/test_smc.py`` checks this by chi-square on an enumerable toy).

**SVDD** (Li et al. 2024, value-guided decoding): at every step, M candidate next states are drawn
from the model's kernel, each valued by r_hat at its own time (one network call per candidate; the
chosen candidate's output is reused by the next step), and one is kept with probability
proportional to exp(r_hat / alpha). Cheaper per design than SMC's P full paths when M < P, greedier
(it follows the tilted law only approximately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from .. import rng as _rng
from ..processes.base import ModelFn, Process
from .loop import FixedPositions, OutputHook, dilated_pairs

#: ``reward(tokens (B, L) long) -> (B,)`` float; batched, pure, larger = better
RewardFn = Callable[[Tensor], Tensor]
METHODS = ("smc", "svdd")


@dataclass(frozen=True)
class RewardGuidance:
    """How to steer toward a reward.

    Attributes:
        reward: ``reward(tokens (B, L)) -> (B,)``.
        alpha: temperature of the tilt exp(r / alpha); smaller = stronger.
        method: ``"smc"`` or ``"svdd"``.
        particles: SMC particles per design, or SVDD candidates per step.
        ess_threshold: SMC resamples a group when its ESS falls below this share of P.
    """

    reward: RewardFn
    alpha: float = 1.0
    method: str = "smc"
    particles: int = 8
    ess_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"reward method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not self.alpha > 0:
            raise ValueError("alpha must be > 0")
        if self.particles < 1:
            raise ValueError("particles must be >= 1")
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ValueError("ess_threshold must be in [0, 1]")


@dataclass
class GuidedSample:
    """Designs and what the guidance did.

    Attributes:
        tokens: ``(n, L)`` long designs.
        reward: ``(n,)`` float64 reward of each design.
        resamples: SMC resampling events (groups x steps); 0 for SVDD.
        min_ess: the smallest effective sample size seen (SMC; P for no resampling).
    """

    tokens: Tensor
    reward: Tensor
    resamples: int = 0
    min_ess: float = math.nan


def _reward(guidance: RewardGuidance, tokens: Tensor) -> Tensor:
    r = torch.as_tensor(guidance.reward(tokens), dtype=torch.float64, device=tokens.device)
    if r.shape != tokens.shape[:1]:
        raise ValueError(f"reward must return one value per sequence, shape ({tokens.shape[0]},); got {tuple(r.shape)}")
    if not bool(torch.isfinite(r).all()):
        raise ValueError("reward returned a non-finite value")
    return r


def systematic_resample(weights: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """Ancestor indices ``(G, P)`` long for normalised weights ``(G, P)`` float64: one uniform per
    group, offsets (u + j) / P against the cumulative weights (low variance, unbiased)."""
    G, P = weights.shape
    u = _rng.rand((G, 1), generator=generator, dtype=torch.float64).to(weights.device)
    points = (u + torch.arange(P, dtype=torch.float64, device=weights.device)[None, :]) / P
    cum = weights.cumsum(-1)
    cum[:, -1] = 1.0  # no index past the end from rounding
    return torch.searchsorted(cum, points).clamp_max(P - 1)


def _call(process: Process, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor],
          fixed: Optional[FixedPositions], hook: Optional[OutputHook],
          generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
    if fixed is not None:
        xt = process.impose(xt, fixed.tokens, fixed.mask, t, generator=generator)
    out = process.model_output(model, xt, t, cond)
    if hook is not None:
        out = hook(out, xt, t)
    return xt, out


def _final_tokens(process: Process, xt: Tensor, fixed: Optional[FixedPositions]) -> Tensor:
    tokens = process.decode(xt)
    return tokens if fixed is None else torch.where(fixed.mask, fixed.tokens, tokens)


@torch.no_grad()
def guided_sample(
    process: Process,
    model: ModelFn,
    shape: tuple[int, int],
    guidance: RewardGuidance,
    *,
    steps: int = 100,
    cond: Optional[Tensor] = None,
    fixed: Optional[FixedPositions] = None,
    dilation: float = 1.0,
    dilation_after: float = 1.0,
    output_hook: Optional[OutputHook] = None,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
) -> GuidedSample:
    """Draw ``shape = (n, L)`` designs from the reward-tilted model (arguments as
    :func:`ddsm.sampling.sample`; ``cond (n,)`` and ``fixed`` rows are per design)."""
    n, L = shape
    if dilation < 1.0:
        raise ValueError("time dilation must be >= 1")
    process.check_dilation(dilation)  # as the plain loop: refused before any draw
    grid = process.time_grid(steps, device=device)
    pairs = list(dilated_pairs(grid, dilation, dilation_after))
    process.prepare_steps(pairs)
    iterator: Iterable = pairs if progress is None else progress(pairs)
    if guidance.method == "smc":
        return _smc(process, model, n, L, guidance, iterator, cond, fixed, output_hook, generator, device)
    return _svdd(process, model, n, L, guidance, iterator, len(pairs), cond, fixed, output_hook, generator, device)


def _repeat(x: Optional[Tensor], P: int) -> Optional[Tensor]:
    return None if x is None else x.repeat_interleave(P, dim=0)


def _smc(process, model, n, L, g: RewardGuidance, pairs, cond, fixed, hook, generator, device) -> GuidedSample:
    P = g.particles
    B = n * P
    cond_p = _repeat(cond, P)
    fixed_p = None if fixed is None else FixedPositions(_repeat(fixed.tokens, P), _repeat(fixed.mask, P))
    xt = process.prior((B, L), generator=generator, device=device)
    logw = torch.zeros(n, P, dtype=torch.float64, device=device)
    prev = torch.zeros(B, dtype=torch.float64, device=device)
    resamples, min_ess = 0, float(P)
    rows = torch.arange(B, device=device).view(n, P)
    for t, s, c in pairs:
        t_b, s_b = t.expand(B), s.expand(B)
        xt, out = _call(process, model, xt, t_b, cond_p, fixed_p, hook, generator)
        value = _reward(g, process.predict_tokens(out, xt, t_b))
        logw += ((value - prev) / g.alpha).view(n, P)
        prev = value
        w = torch.softmax(logw, dim=1)
        ess = 1.0 / (w * w).sum(1)
        min_ess = min(min_ess, float(ess.min()))
        low = ess < g.ess_threshold * P
        if bool(low.any()):
            anc = systematic_resample(w[low], generator=generator)  # (m, P) within-group indices
            src = rows.clone()
            src[low] = rows[low].gather(1, anc)
            idx = src.reshape(-1)
            xt, out, prev = xt[idx], out[idx], prev[idx]
            logw[low] = 0.0
            resamples += int(low.sum())
        xt = process.step(out, xt, t_b, s_b, generator=generator, dilation=c)
    tokens = _final_tokens(process, xt, fixed_p)
    final = _reward(g, tokens)
    logw += ((final - prev) / g.alpha).view(n, P)
    pick = _rng.multinomial(torch.softmax(logw, dim=1), 1, generator=generator).squeeze(-1)  # (n,)
    chosen = rows.gather(1, pick[:, None].to(rows.device)).squeeze(1)
    return GuidedSample(tokens[chosen], final[chosen], resamples, min_ess)


def _svdd(process, model, n, L, g: RewardGuidance, pairs, n_steps, cond, fixed, hook, generator,
          device) -> GuidedSample:
    M = g.particles
    # candidates are M blocks of the n designs: their labels and fixed positions, tiled once
    cond_c = None if cond is None else cond.repeat(M)
    fixed_c = None if fixed is None else FixedPositions(_repeat_tile(fixed.tokens, M), _repeat_tile(fixed.mask, M))
    xt = process.prior((n, L), generator=generator, device=device)
    out = None
    for j, (t, s, c) in enumerate(pairs):  # ``pairs`` may be a progress bar: iterated once
        t_b, s_b = t.expand(n), s.expand(n)
        if out is None:  # the first step; later ones reuse the chosen candidate's output
            xt, out = _call(process, model, xt, t_b, cond, fixed, hook, generator)
        cands = torch.cat([process.step(out, xt, t_b, s_b, generator=generator, dilation=c) for _ in range(M)])
        last = j == n_steps - 1
        if last:
            value = _reward(g, _final_tokens(process, cands, fixed_c))
            out_c = None
        else:
            sc_b = s.expand(n * M)
            cands, out_c = _call(process, model, cands, sc_b, cond_c, fixed_c, hook, generator)
            value = _reward(g, process.predict_tokens(out_c, cands, sc_b))
        probs = torch.softmax(value.view(M, n).t() / g.alpha, dim=1)  # (n, M)
        pick = _rng.multinomial(probs, 1, generator=generator).squeeze(-1)
        idx = pick.to(cands.device) * n + torch.arange(n, device=cands.device)
        xt = cands[idx]
        out = None if out_c is None else out_c[idx]
        if last:
            tokens = _final_tokens(process, xt, fixed)
            return GuidedSample(tokens, value[idx], 0, math.nan)
    tokens = _final_tokens(process, xt, fixed)  # an empty grid: the prior's reading
    return GuidedSample(tokens, _reward(g, tokens), 0, math.nan)


def _repeat_tile(x: Tensor, M: int) -> Tensor:
    """Candidates are stacked as M blocks of n rows: tile the per-design rows M times."""
    return x.repeat(M, *([1] * (x.dim() - 1)))
