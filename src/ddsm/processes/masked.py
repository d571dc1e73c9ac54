"""Masked (absorbing-state) diffusion: MDLM (Sahoo et al., NeurIPS 2024).

Forward: each token is independently replaced by the mask id K with probability 1 - alpha_t,
log-linear schedule alpha_t = 1 - (1 - eps) t. The network reads one-hot features over K + 1
symbols and returns logits over the K real tokens (``out_channels = K``: the mask is never
predicted). SUBS parameterisation, applied by ``model_output`` after the network: unmasked
positions get a point mass on their current token (carry-over).

Loss (continuous-time Rao-Blackwellised NELBO), per token:
    -alpha'_t / (1 - alpha_t) * log p_theta(x0 | z_t)   at masked positions, 0 elsewhere,
and -alpha'_t / (1 - alpha_t) = 1 / t for this schedule, whatever eps.

Reverse (``step``, ancestral): from t to s each masked token is unmasked with probability
(alpha_s - alpha_t) / (1 - alpha_t) = (t - s) / t to a float64 draw from p_theta(x0 | z_t).

What eps does. The unmasking probability (t - s) / t does not depend on eps, so the sampler (and
its continuous-time limit, unmasking rate 1/t) is the eps = 0 process started from all-masks at
t = 1. eps only changes training: masking fractions stay below 1 - eps, and training times are
clamped to t >= eps (MDLM's ``sampling_eps``) to bound the 1/t weights. ``bits_per_token``
therefore evaluates the ELBO of the model the sampler actually draws from: masking probability
t, weight 1/t, no prior term (the prior is exactly all-masks).

Time conditioning. The true posterior p(x0 | z_t) at masked positions does not depend on t
(Ou et al. 2024), so by default (``time_conditioning=False``) the network is fed t = 0 always.
Then the output depends on the state alone and can be reused between steps where nothing was
unmasked (MDLM's ``ddpm_cache``): see ``cached_output_valid`` and ``CachedDenoiser``.

Samplers (``samplers``; the ``sampler`` option is the default that ``ddsm.sampling.sample`` and
``ddsm.api.design`` run when they are not asked for one):
    ``"ancestral"``     the shared grid loop ``ddsm.sampling.sample`` with ``step``; wrap the model
                        in ``CachedDenoiser(process, model)`` to skip calls where nothing changed.
    ``"first-hitting"`` ``sample_first_hitting`` (Zheng et al. 2024): draws the next unmasking
                        time exactly and unmasks one token per network call (L calls, no grid).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from ..models.base import RawStateModel, takes_raw_state
from ._tokens import (
    carry_over,
    draw_rows,
    jump_to_posterior,
    one_hot_features,
    point_mass_logits,
    stratified_times,
    uniform,
)
from .base import FixedPositions, ModelFn, NoisySample, Process

SAMPLERS = ("ancestral", "first-hitting")


class MaskedProcess(Process):
    """Absorbing-state diffusion with the SUBS parameterisation and the MDLM loss."""

    name = "masked"
    description = "MDLM: masked (absorbing-state) diffusion, SUBS, ancestral or first-hitting sampler"
    state_kind = "tokens"
    samplers = SAMPLERS

    def __init__(self, K: int, eps: float = 1e-3, sampler: str = "ancestral",
                 time_conditioning: bool = False) -> None:
        """
        Args:
            K: number of real tokens; the mask has id K.
            eps: schedule floor, alpha_1 = eps, and the smallest training time.
            sampler: the default sampler, ``"ancestral"`` (grid loop with ``step``) or
                ``"first-hitting"`` (``sample_first_hitting``); ``step`` is always ancestral.
            time_conditioning: feed the network the true t instead of 0.
        """
        super().__init__(K)
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must lie in [0, 1), got {eps}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        self.eps, self.sampler, self.time_conditioning = float(eps), sampler, bool(time_conditioning)

    @property
    def mask_id(self) -> int:
        return self.K

    @property
    def default_sampler(self) -> str:
        """The configured ``sampler`` option."""
        return self.sampler

    def sample_with(self, sampler: str, model: ModelFn, shape: tuple[int, int], *,
                    cond: Optional[Tensor] = None, fixed: Optional[FixedPositions] = None,
                    output_hook: Optional[Callable[[Tensor, Tensor, Tensor], Tensor]] = None,
                    generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None,
                    progress: Optional[Callable[[Iterable], Iterable]] = None) -> Tensor:
        """``"first-hitting"``: :meth:`sample_first_hitting` (see :meth:`Process.sample_with`)."""
        if sampler == "first-hitting":
            return self.sample_first_hitting(model, shape, cond=cond, fixed=fixed, output_hook=output_hook,
                                             generator=generator, device=device, progress=progress)
        return super().sample_with(sampler, model, shape, cond=cond, fixed=fixed, output_hook=output_hook,
                                   generator=generator, device=device, progress=progress)

    # ------------------------------------------------------------------ schedule
    def alpha(self, t: Tensor) -> Tensor:
        """Probability that a token is still clean at public time t: 1 - (1 - eps) t (float64)."""
        return 1.0 - (1.0 - self.eps) * t.double()

    def weight(self, t: Tensor) -> Tensor:
        """ELBO weight -alpha'_t / (1 - alpha_t) = 1 / t (float64)."""
        return 1.0 / t.double()

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return self.K + 1

    @property
    def out_channels(self) -> int:
        return self.K

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return one_hot_features(xt, self.K + 1)

    def model_output(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Network logits ``(B, L, K)`` with the SUBS carry-over applied at unmasked positions."""
        if not self.time_conditioning and not takes_raw_state(model):
            t = torch.zeros_like(t)
        return carry_over(super().model_output(model, xt, t, cond), xt, self.mask_id)

    # ------------------------------------------------------------------ forward process
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)

    def _mask(self, x0: Tensor, p_mask: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        """Replace each token of ``x0 (B, L)`` by the mask with probability ``p_mask (B,)``."""
        u = uniform(tuple(x0.shape), like=x0, generator=generator)
        return torch.where(u < p_mask.double()[:, None], torch.full_like(x0, self.mask_id), x0)

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        return NoisySample(xt=self._mask(x0, 1.0 - self.alpha(t), generator), t=t)

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        # Clamping (not rescaling) keeps the stratification; the ELBO integrand is bounded near 0,
        # so replacing [0, eps) by its value at eps changes the objective by O(eps).
        return super().sample_time(batch, generator=generator, device=device).clamp_min(max(self.eps, 1e-6))

    # ------------------------------------------------------------------ training
    def token_nll(self, output: Tensor, x0: Tensor, xt: Tensor) -> Tensor:
        """-log p_theta(x0 | z_t) at masked positions, 0 elsewhere: ``(B, L)`` float32.

        ``torch.where`` (not a product) keeps the -1e4 point-mass logits of unmasked positions
        from leaking into the result or its gradient.
        """
        logp = torch.log_softmax(output.float(), dim=-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        return torch.where(xt == self.mask_id, -logp, torch.zeros_like(logp))

    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        w = self.weight(noisy.t).float()[:, None]
        return w * self.token_nll(output, x0, noisy.xt)

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return point_mass_logits(x0, self.K)

    # ------------------------------------------------------------------ reverse process
    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """Ancestral step: each masked token is unmasked with probability (t - s) / t to a draw
        from ``softmax(output)``; unmasked tokens never change (whatever ``output`` says)."""
        self.check_dilation(dilation)
        t64, s64 = t.double(), s.double()
        p_unmask = ((t64 - s64) / t64.clamp_min(1e-12)).clamp(0.0, 1.0)
        return jump_to_posterior(output, xt, p_unmask, xt == self.mask_id, generator=generator)

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Unmask the known positions to their tokens; SUBS then copies them to the end."""
        return torch.where(known, x0, xt)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """Unmasked tokens as they are, masked ones the argmax of the SUBS posterior."""
        return torch.where(xt == self.mask_id, output.argmax(-1), xt)

    def decode(self, xt: Tensor) -> Tensor:
        """Tokens ``(B, L)``; a position still masked (only before the last step) reads as 0."""
        return torch.where(xt == self.mask_id, torch.zeros_like(xt), xt)

    def is_valid(self, xt: Tensor) -> bool:
        return (xt.dim() == 2 and xt.dtype == torch.long
                and bool(((xt >= 0) & (xt <= self.mask_id)).all()))

    # ------------------------------------------------------------------ output caching
    def cached_output_valid(self, prev_xt: Tensor, xt: Tensor) -> bool:
        """Whether the network output computed at ``prev_xt`` may be reused at ``xt``.

        True when the network ignores t (``time_conditioning=False``) and no token changed: the
        SUBS output is then a function of the state alone.
        """
        return (not self.time_conditioning and prev_xt.shape == xt.shape
                and bool(torch.equal(prev_xt, xt)))

    # ------------------------------------------------------------------ first-hitting sampler
    @torch.no_grad()
    def sample_first_hitting(self, model: ModelFn, shape: tuple[int, int], *,
                             cond: Optional[Tensor] = None, fixed: Optional[FixedPositions] = None,
                             output_hook: Optional[Callable[[Tensor, Tensor, Tensor], Tensor]] = None,
                             generator: Optional[torch.Generator] = None,
                             device: Optional[torch.device] = None,
                             progress: Optional[Callable[[Iterable], Iterable]] = None) -> Tensor:
        """Exact simulation of the continuous-time reverse process, one token per network call.

        With n masked tokens at time t, each one's unmasking time (backwards) is t U_i (its
        survival (1 - alpha_s) / (1 - alpha_t) = s / t), so the next event is at s = t U^(1/n),
        and it unmasks a uniformly chosen masked position to a draw from p_theta(x0 | z, s).
        Every row of the batch runs its own clock; rows with nothing left to unmask wait.

        Args:
            shape: ``(B, L)``.
            cond: ``(B,)`` class labels or None.
            fixed: known positions, unmasked before the first call and kept to the end.
            output_hook: ``hook(out (B, L, K), xt (B, L), t (B,)) -> out``, applied to every network
                output (e.g. guidance); ``t`` holds each row's own time.
            progress: wraps the iterator over network calls (one per token still masked).
        Returns:
            ``(B, L)`` long tokens.
        """
        B, L = shape
        xt = self.prior(shape, generator=generator, device=device)
        if fixed is not None:
            xt = self.impose(xt, fixed.tokens, fixed.mask, torch.ones(B, device=xt.device))
        t = torch.ones(B, dtype=torch.float64, device=xt.device)
        rows = torch.arange(B, device=xt.device)
        # Every call unmasks exactly one token of every row that has one left, so the run takes as
        # many calls as the most-masked row has masked tokens (an iterator a progress bar can wrap).
        calls: Iterable = range(int((xt == self.mask_id).sum(-1).max())) if B else range(0)
        for _ in (calls if progress is None else progress(calls)):
            masked = xt == self.mask_id
            n = masked.sum(-1)
            active = n > 0
            if not bool(active.any()):
                break
            u = uniform((B,), like=t, generator=generator)
            t = torch.where(active, t * u ** (1.0 / n.clamp_min(1).double()), t)
            t_f = t.float().clamp_min(1e-12)
            out = self.model_output(model, xt, t_f, cond)
            if output_hook is not None:
                out = output_hook(out, xt, t_f)
            pos = draw_rows(torch.log(masked[active].double()), generator=generator)  # uniform among masked
            r = rows[active]
            xt[r, pos] = draw_rows(out[r, pos], generator=generator)
        tokens = self.decode(xt)
        if fixed is not None:
            tokens = torch.where(fixed.mask, fixed.tokens, tokens)
        return tokens

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100) -> Tensor:
        """Continuous-time NELBO of the sampler's model in bits per real token, ``(B,)``.

        NELBO(x0) = int_0^1 (1/t) E_{z_t}[ sum_l [z_t^l masked] (-log p_theta(x0^l | z_t)) ] dt
        with each real token masked with probability t (the eps-free process the sampler runs,
        see the module docstring). Estimated with ``steps`` stratified times per sequence
        (one network call each); unbiased, so never below the model's NLL in expectation. With
        exact posteriors it equals -log p(x0) (any-order autoregression), and a perfect model of
        point-mass data scores 0. Padding positions (``pad_mask`` False) stay clean: they are
        conditioned on, not scored.
        """
        B, L = x0.shape
        real = torch.ones_like(x0, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
        total = torch.zeros(B, dtype=torch.float64, device=x0.device)
        for t in stratified_times(steps, B, like=x0, generator=generator):
            zt = torch.where(real, self._mask(x0, t, generator), x0)
            out = self.model_output(model, zt, t.float(), cond)
            total += self.weight(t) * self.token_nll(out, x0, zt).double().sum(-1)
        n_real = real.sum(-1).clamp_min(1).double()
        return (total / steps / (n_real * math.log(2.0))).float()


class CachedDenoiser(RawStateModel):
    """Wraps a network so that the ancestral loop skips calls where the state did not change.

    Use in the CLI as ``sample(process, CachedDenoiser(process, model), shape, ...)`` when
    ``process.name == "masked"`` and ``process.time_conditioning`` is False (with time
    conditioning it simply calls the network every step). It is a
    :class:`~ddsm.models.base.RawStateModel`, so ``process.model_output`` hands it the raw state; it
    calls the network through ``process.model_output`` itself and returns the cached SUBS logits when
    ``process.cached_output_valid`` holds and ``cond`` is unchanged. One instance per ``sample``
    call (it keeps the last state). ``calls`` counts real network evaluations.
    """

    def __init__(self, process: MaskedProcess, model: ModelFn) -> None:
        self.process, self.model = process, model
        self.calls = 0
        self._xt: Optional[Tensor] = None
        self._cond: Optional[Tensor] = None
        self._out: Optional[Tensor] = None

    def __call__(self, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        if (self._out is not None and self._xt is not None
                and self.process.cached_output_valid(self._xt, xt) and _same(self._cond, cond)):
            return self._out.clone()  # a clone: output hooks may edit their input in place
        out = self.process.model_output(self.model, xt, t, cond)
        self.calls += 1
        self._xt, self._cond, self._out = xt.clone(), None if cond is None else cond.clone(), out
        return out.clone()


def _same(a: Optional[Tensor], b: Optional[Tensor]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a, b))
