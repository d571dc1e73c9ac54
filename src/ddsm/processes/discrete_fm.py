"""Discrete flow matching with a factorised mixture path (Gat et al., NeurIPS 2024).

Path, per position, in our clock (t = 0 data, t = 1 source):
    p_t(x | x0, x_src) = kappa(t) delta_{x0}(x) + (1 - kappa(t)) delta_{x_src}(x),
    kappa(t) = (1 - t)^n   (``schedule="linear"``: n = 1; ``"polynomial"``: n = ``exponent``),
with the source x_src either the mask id K (``source="mask"``) or uniform over the K tokens
(``source="uniform"``). The network predicts the posterior p_theta(x0 | x_t) (``out_channels =
K`` logits). With the mask source the SUBS carry-over is applied, as in MDLM: an unmasked token
is its own posterior.

Generation runs the CTMC with velocity u_t(y | x) = r(t) (p_theta(y | x_t) - delta_x(y)),
r(t) = -kappa'(t) / (1 - kappa(t)) (Gat et al.'s kappa_dot / (1 - kappa) in reversed time).
That velocity is a Poisson clock of rate r(t) per position that resets the token to a fresh
draw from p_theta. ``step`` integrates the clock exactly over [s, t] with p_theta frozen at t:
a position (every one for the uniform source, masked ones for the mask source) is redrawn with
probability 1 - exp(-int_s^t r) = (kappa(s) - kappa(t)) / (1 - kappa(t)); draws in float64. As
t - s -> 0 it is the factorised Euler update, and it never leaves [0, 1] for large steps.

Training (``weighting``):
    ``"ce"``   the posterior's cross-entropy -log p_theta(x0^l | x_t) at every position (Gat et
               al.); with the mask source unmasked positions contribute 0 (carry-over).
    ``"elbo"`` the continuous-time NELBO integrand below (with the mask source: MDLM's loss).

Likelihood. Let Q be the path measure of the conditional CTMC given x0 (each position not at
x0^l jumps to x0^l at rate r(t)); it starts from the source, as the model does, and ends at x0
surely, so -log p_theta(x0) <= KL(Q || P_theta). The CTMC Girsanov formula
KL = E_Q int sum_{y != z} [R_Q log(R_Q / R_P) - R_Q + R_P] dt gives, per position l with
z = z_t^l (marginally z ~ p_t(. | x0^l)) and p = p_theta(. | z_t):
    z != x0^l :  r(t) [ -log p(x0^l) - p(z) ]          (p(mask) = 0)
    z == x0^l :  r(t) [ 1 - p(x0^l) ]
so NELBO(x0) = int_0^1 E_{z_t}[ sum_l term_l ] dt. For the mask source the second line vanishes
(carry-over) and p(z) = 0, which is MDLM's NELBO. For the uniform source this is the bound for
this sampler's model (not UDLM's D3PM-style parameterisation, whose ELBO is for another reverse
model); it is 0 for a perfect model of point-mass data and, unlike the mask case, stays strictly
above the NLL even with exact posteriors (a mixture of the conditional CTMCs is not Markov).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .. import rng as _rng
from ._tokens import (
    carry_over,
    draw_device,
    jump_to_posterior,
    one_hot_features,
    point_mass_logits,
    stratified_times,
    uniform,
)
from .base import ModelFn, NoisySample, Process

SOURCES = ("mask", "uniform")
SCHEDULES = ("linear", "polynomial")
WEIGHTINGS = ("ce", "elbo")
_T_MIN = 1e-3  # smallest training time: bounds the ~1/t ELBO weight, changes the loss by O(1e-3)


class DiscreteFMProcess(Process):
    """Discrete flow matching on a mixture path with a mask or uniform source."""

    name = "discrete-fm"
    description = "discrete flow matching: mixture path, mask or uniform source, CTMC sampler"
    state_kind = "tokens"

    def __init__(self, K: int, source: str = "mask", schedule: str = "linear", exponent: float = 2.0,
                 weighting: str = "ce") -> None:
        """
        Args:
            K: number of tokens; with ``source="mask"`` the mask has id K.
            source: ``"mask"`` or ``"uniform"``.
            schedule: ``"linear"`` (kappa = 1 - t) or ``"polynomial"`` (kappa = (1 - t)^exponent).
            exponent: the polynomial schedule's exponent n > 0 (unused by ``"linear"``).
            weighting: training loss, ``"ce"`` (cross-entropy) or ``"elbo"`` (the NELBO).
        """
        super().__init__(K)
        for value, known, what in ((source, SOURCES, "source"), (schedule, SCHEDULES, "schedule"),
                                   (weighting, WEIGHTINGS, "weighting")):
            if value not in known:
                raise ValueError(f"unknown {what} {value!r}; known: {', '.join(known)}")
        if not exponent > 0:
            raise ValueError(f"the polynomial exponent must be > 0, got {exponent}")
        self.source, self.schedule, self.weighting = source, schedule, weighting
        self.exponent = float(exponent)

    @property
    def masked_source(self) -> bool:
        return self.source == "mask"

    @property
    def mask_id(self) -> int:
        """Id of the mask token (only a state value with the mask source)."""
        return self.K

    @property
    def n(self) -> float:
        """Exponent of kappa(t) = (1 - t)^n."""
        return 1.0 if self.schedule == "linear" else self.exponent

    # ------------------------------------------------------------------ schedule (float64)
    def kappa(self, t: Tensor) -> Tensor:
        """Probability that a position holds its data token (not the source draw)."""
        return (1.0 - t.double()).clamp_min(0.0) ** self.n

    def one_minus_kappa(self, t: Tensor) -> Tensor:
        # expm1/log1p: accurate for t near 0, where the rate r(t) ~ 1/t needs it.
        return -torch.expm1(self.n * torch.log1p(-t.double().clamp(max=1.0)))

    def rate(self, t: Tensor) -> Tensor:
        """r(t) = -kappa'(t) / (1 - kappa(t)) = n (1 - t)^(n-1) / (1 - (1 - t)^n)."""
        t = t.double()
        return self.n * (1.0 - t).clamp_min(0.0) ** (self.n - 1.0) / self.one_minus_kappa(t)

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return self.K + 1 if self.masked_source else self.K

    @property
    def out_channels(self) -> int:
        return self.K

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return one_hot_features(xt, self.in_channels)

    def model_output(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Posterior logits ``(B, L, K)``; with the mask source, unmasked positions are copied."""
        out = super().model_output(model, xt, t, cond)
        return carry_over(out, xt, self.mask_id) if self.masked_source else out

    # ------------------------------------------------------------------ forward process
    def _source(self, shape: tuple[int, ...], *, like: Tensor,
                generator: Optional[torch.Generator]) -> Tensor:
        if self.masked_source:
            return torch.full(shape, self.mask_id, dtype=torch.long, device=like.device)
        dev = draw_device(generator, like.device)
        return _rng.randint(0, self.K, shape, generator=generator, device=dev).to(like.device)

    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        like = torch.empty(0, device=device)
        return self._source(tuple(shape), like=like, generator=generator)

    def _corrupt(self, x0: Tensor, p_src: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        """Replace each token of ``x0 (B, L)`` by a source draw with probability ``p_src (B,)``."""
        u = uniform(tuple(x0.shape), like=x0, generator=generator)
        src = self._source(tuple(x0.shape), like=x0, generator=generator)
        return torch.where(u < p_src.double()[:, None], src, x0)

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        return NoisySample(xt=self._corrupt(x0, self.one_minus_kappa(t), generator), t=t)

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        return super().sample_time(batch, generator=generator, device=device).clamp_min(_T_MIN)

    # ------------------------------------------------------------------ training
    def elbo_terms(self, output: Tensor, x0: Tensor, xt: Tensor) -> Tensor:
        """The NELBO integrand divided by r(t), per position ``(B, L)`` (dtype of ``output``):
        -log p(x0) - p(z) where z != x0, 1 - p(x0) where z == x0 (module docstring)."""
        logp = torch.log_softmax(output, dim=-1)
        lp_x0 = logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        p_z = logp.gather(-1, xt.clamp(max=self.K - 1).unsqueeze(-1)).squeeze(-1).exp()
        p_z = torch.where(xt < self.K, p_z, torch.zeros_like(p_z))  # the mask is never predicted
        return torch.where(xt == x0, -torch.expm1(lp_x0), -lp_x0 - p_z)

    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        out = output.float()
        if self.weighting == "elbo":
            return self.rate(noisy.t).float()[:, None] * self.elbo_terms(out, x0, noisy.xt)
        return -torch.log_softmax(out, dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return point_mass_logits(x0, self.K)

    # ------------------------------------------------------------------ reverse process
    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """Redraw positions from ``softmax(output)`` with probability (kappa(s) - kappa(t)) /
        (1 - kappa(t)); with the mask source only masked positions move."""
        self.check_dilation(dilation)
        p_jump = ((self.kappa(s) - self.kappa(t)) / self.one_minus_kappa(t).clamp_min(1e-300)).clamp(0.0, 1.0)
        movable = xt == self.mask_id if self.masked_source else torch.ones_like(xt, dtype=torch.bool)
        return jump_to_posterior(output, xt, p_jump, movable, generator=generator)

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Known positions hold their clean token (a state the path reaches at every t)."""
        return torch.where(known, x0, xt)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """Argmax of the predicted data token (with the mask source, unmasked tokens stay)."""
        pred = output[..., : self.K].argmax(-1)
        return torch.where(xt == self.mask_id, pred, xt) if self.masked_source else pred

    def decode(self, xt: Tensor) -> Tensor:
        """Tokens ``(B, L)``; a masked position (only before the last step) reads as 0."""
        return torch.where(xt >= self.K, torch.zeros_like(xt), xt)

    def is_valid(self, xt: Tensor) -> bool:
        hi = self.mask_id if self.masked_source else self.K - 1
        return xt.dim() == 2 and xt.dtype == torch.long and bool(((xt >= 0) & (xt <= hi)).all())

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100) -> Tensor:
        """Continuous-time NELBO (module docstring) in bits per real token, ``(B,)``.

        ``steps`` stratified times per sequence, one network call each; the estimate is unbiased,
        so never below the model's NLL in expectation. Padding positions stay clean
        (conditioned on, not scored).
        """
        B, L = x0.shape
        real = torch.ones_like(x0, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
        total = torch.zeros(B, dtype=torch.float64, device=x0.device)
        for t in stratified_times(steps, B, like=x0, generator=generator):
            zt = torch.where(real, self._corrupt(x0, self.one_minus_kappa(t), generator), x0)
            out = self.model_output(model, zt, t.float(), cond).double()
            terms = torch.where(real, self.elbo_terms(out, x0, zt), torch.zeros((), dtype=torch.float64))
            total += self.rate(t) * terms.sum(-1)
        n_real = real.sum(-1).clamp_min(1).double()
        return (total / steps / (n_real * math.log(2.0))).float()
