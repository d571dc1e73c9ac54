"""Dirichlet flow matching (Stark, Jing, Wang, Corso, Berger, Barzilay, Jaakkola, ICML 2024).

Conditional path given the clean letter e_i: x ~ Dir(1 + (alpha - 1) e_i), from the flat
Dirichlet (alpha = 1) towards the vertex e_i (alpha -> infinity). Its x_i marginal is
Beta(alpha, K - 1), and the other coordinates are (1 - x_i) times a flat Dir(1_{K-1}) draw,
independent of x_i.

Conditional vector field (in alpha). Move x along the segment towards e_i,
    u(x | e_i) = C(x_i, alpha) (e_i - x),
so the ratios x_j / (1 - x_i), j != i, are constant (they stay Dir(1_{K-1})), and x_i obeys
dx_i/dalpha = C (1 - x_i). Keeping x_i ~ Beta(alpha, K - 1) means the CDF value
I_{x_i}(alpha, K - 1) is constant along the flow:
    d/dalpha I = dI/dalpha + pdf(x_i) dx_i/dalpha = 0
    =>  C(x, alpha) = -(d/dalpha I_x(alpha, n)) / ((1 - x) pdf_Beta(alpha, n)(x)),   n = K - 1.
For integer n the Beta CDF is a negative-binomial sum, which gives C in closed form (see
``dirichlet_flow_c``); no tabulation is needed and C is differentiable in x (the likelihood
ODE takes its divergence with autograd).

Marginal field: v(x) = sum_i u(x | e_i) p_theta(e_i | x); the network is the denoiser
p_theta(x_1 | x_alpha) (``out_channels = K`` logits) trained with cross-entropy.

Clock. Public t in (0, 1] maps to alpha(t) = 1 + alpha_scale * (-log t). Uniform training times
therefore give the paper's training law alpha ~ 1 + alpha_scale * Exp(1); t = 1 is the prior
Dir(1) and t -> 0 the data (alpha -> infinity). Sampling integrates alpha from 1 to ``alpha_max``
with Euler steps uniform in alpha (the paper's grid), and the last interval, from
t(alpha_max) to t = 0, reads the tokens off the network's final prediction (its argmax, as the
reference sampler does, or a float64 categorical draw): the state then sits on a vertex.

The state is the simplex point ``x (B, L, K)`` in float64 (``state_kind = "simplex"``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng as _rng
from ..special.transition import numpy_rng
from .base import ModelFn, NoisySample, Process, sample_categorical

_F64_EPS = float(torch.finfo(torch.float64).eps)
#: relative error above which the finite-sum form of C is replaced by the tail series
_FINITE_SUM_TOL = 1e-9
#: terms of the tail series (only evaluated where the finite sum cancels badly)
_TAIL_TERMS = 160
#: logit of the true letter in ``oracle_output`` (softmax gives an exact point mass)
_ORACLE_LOGIT = 1e4
_FINAL_DECODES = ("argmax", "sample")


# ---------------------------------------------------------------------------------- the C factor
def _harmonic(alpha: Tensor, j: int) -> Tensor:
    """h_j(alpha) = sum_{m < j} 1 / (alpha + m) = psi(alpha + j) - psi(alpha)."""
    h = torch.zeros_like(alpha)
    for m in range(j):
        h = h + 1.0 / (alpha + m)
    return h


def _c_finite_sum(x: Tensor, alpha: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """C from the finite negative-binomial sum, and an estimate of its relative rounding error.

    With c_j = Gamma(alpha + j) / (Gamma(alpha) j!), h_j = psi(alpha + j) - psi(alpha), y = 1 - x:
        I_x(alpha, n) = x^alpha sum_{j<n} c_j y^j,
        dI/dalpha     = x^alpha sum_{j<n} c_j y^j (log x + h_j),
        pdf(x)        = (alpha + n - 1) c_{n-1} x^(alpha-1) y^(n-1),
    so C = -x / (alpha + n - 1) * sum_{j<n} (c_j / c_{n-1}) (log x + h_j) y^(j-n).
    The sum cancels when I is close to 1 (x far in the upper tail); the error estimate
    eps * sum |terms| / |sum| flags those points.
    """
    inv_y = 1.0 / (1.0 - x)
    lx = torch.log(x)
    total = torch.zeros_like(x)
    size = torch.zeros_like(x)
    h = [torch.zeros_like(alpha)]
    for m in range(n - 1):
        h.append(h[-1] + 1.0 / (alpha + m))
    r = torch.ones_like(alpha)  # c_j / c_{n-1}, walked down from j = n - 1
    y_pow = inv_y  # y^(j - n)
    for j in range(n - 1, -1, -1):
        term = r * (lx + h[j]) * y_pow
        total = total + term
        size = size + term.abs()
        r = r * j / (alpha + j - 1.0)
        y_pow = y_pow * inv_y
    c = -x / (alpha + n - 1.0) * total
    return c, _F64_EPS * size / total.abs()


def _c_tail_series(x: Tensor, alpha: Tensor, n: int, terms: int = _TAIL_TERMS) -> Tensor:
    """C from the complementary (infinite) series, accurate where the finite sum cancels.

    sum_{j >= 0} c_j x^alpha y^j = 1, hence dI/dalpha = -x^alpha sum_{j>=n} c_j y^j (log x + h_j)
    and C = x / (alpha + n - 1) * sum_{j>=n} (c_j / c_{n-1}) (log x + h_j) y^(j-n). The product
    w_j = (c_j / c_{n-1}) y^(j-n) is updated in one factor y (alpha + j) / (j + 1) so that it
    never overflows.
    """
    y = 1.0 - x
    lx = torch.log(x)
    h = _harmonic(alpha, n)
    w = (alpha + n - 1.0) / n * torch.ones_like(x)
    total = torch.zeros_like(x)
    for j in range(n, n + terms):
        total = total + w * (lx + h)
        w = w * y * (alpha + j) / (j + 1.0)
        h = h + 1.0 / (alpha + j)
    return x / (alpha + n - 1.0) * total


def dirichlet_flow_c(x: Tensor, alpha: Tensor, K: int) -> Tensor:
    """The scalar C(x, alpha) of the conditional Dirichlet flow u(x | e_i) = C(x_i, alpha)(e_i - x).

    C(x, alpha) = -(d/dalpha I_x(alpha, K-1)) / ((1 - x) pdf_Beta(alpha, K-1)(x)), positive.

    Args:
        x: ``(...)`` the coordinate x_i in [0, 1] (any float dtype; computed in float64).
        alpha: broadcastable to ``x``, alpha >= 1.
        K: number of categories (K >= 2).
    Returns:
        ``(...)`` float64, differentiable in ``x``.
    """
    n = K - 1
    x = x.double().clamp(1e-300, 1.0)
    alpha = torch.as_tensor(alpha, dtype=torch.float64, device=x.device).expand_as(x)
    c, rel = _c_finite_sum(x, alpha, n)
    bad = ~(rel.detach() <= _FINITE_SUM_TOL)  # also catches NaN / inf (x = 1 exactly)
    if bool(bad.any()):
        # Re-evaluate the finite sum at a harmless x where it is replaced, so that no inf/NaN
        # reaches the backward pass through the unused branch.
        c = _c_finite_sum(torch.where(bad, torch.full_like(x, 0.5), x), alpha, n)[0]
        c = c.masked_scatter(bad, _c_tail_series(x[bad], alpha[bad], n))
    return c


# ---------------------------------------------------------------------------------- the process
class DirichletFMProcess(Process):
    """Dirichlet flow matching: Dir(1 + (alpha - 1) e_x0) paths, denoiser trained by cross-entropy."""

    name = "dirichlet-fm"
    description = "Dirichlet flow matching (Stark et al. 2024): Dir(1 + (alpha-1) e_x) paths, Euler ODE"
    state_kind = "simplex"
    classifier_guidance = "posterior-logits"

    def __init__(self, K: int, alpha_scale: float = 2.0, alpha_max: float = 8.0,
                 final_decode: str = "argmax", eps: float = 1e-12) -> None:
        """
        Args:
            K: number of categories.
            alpha_scale: training law alpha ~ 1 + alpha_scale * Exp(1) (the paper's default 2);
                also the clock alpha(t) = 1 + alpha_scale * (-log t).
            alpha_max: where the Euler integration stops (the paper's default 8).
            final_decode: how the last interval (alpha_max -> data) reads tokens off the network's
                prediction: ``"argmax"`` (the reference sampler) or ``"sample"`` (float64 draw).
            eps: floor of the simplex coordinates after an Euler step (then renormalised).
        """
        super().__init__(K)
        if alpha_max <= 1.0:
            raise ValueError(f"alpha_max must exceed 1, got {alpha_max}")
        if alpha_scale <= 0.0:
            raise ValueError(f"alpha_scale must be positive, got {alpha_scale}")
        if final_decode not in _FINAL_DECODES:
            raise ValueError(f"final_decode must be one of {_FINAL_DECODES}, got {final_decode!r}")
        self.alpha_scale, self.alpha_max = float(alpha_scale), float(alpha_max)
        self.final_decode, self.eps = final_decode, float(eps)

    # ------------------------------------------------------------------ clocks
    def alpha(self, t: Tensor) -> Tensor:
        """Public t ``(B,)`` -> alpha ``(B,)`` float64 (t = 0 gives +inf, the data)."""
        return 1.0 - self.alpha_scale * torch.log(t.double())

    def public_time(self, alpha: Tensor) -> Tensor:
        """alpha ``(...)`` -> public t, float64."""
        return torch.exp(-(alpha.double() - 1.0) / self.alpha_scale)

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return self.K

    @property
    def out_channels(self) -> int:
        return self.K

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return xt.float()

    # ------------------------------------------------------------------ forward process
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        # Dir(1): normalised unit exponentials.
        u = _rng.rand((*shape, self.K), generator=generator, dtype=torch.float64)
        e = -torch.log1p(-u)
        return (e / e.sum(-1, keepdim=True)).to(device)

    def dirichlet_draw(self, x0: Tensor, alpha: Tensor, *,
                       generator: Optional[torch.Generator] = None) -> Tensor:
        """Exact draws of Dir(1 + (alpha - 1) e_x0): ``x0 (B, L)``, ``alpha (B,)`` -> ``(B, L, K)``
        float64. Infinite alpha gives the vertex e_x0."""
        B, L = x0.shape
        onehot = F.one_hot(x0, self.K).double()
        conc = 1.0 + (alpha.double()[:, None, None] - 1.0) * onehot
        finite = torch.isfinite(conc)
        rng = numpy_rng(generator)
        g = rng.standard_gamma(torch.where(finite, conc, torch.ones_like(conc)).cpu().numpy())
        g = torch.from_numpy(g).to(x0.device).clamp_min(1e-300)
        x = g / g.sum(-1, keepdim=True)
        return torch.where(finite.all(-1, keepdim=True), x, onehot)

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        xt = self.dirichlet_draw(x0, self.alpha(t), generator=generator)
        return NoisySample(xt=xt, t=t, target=x0)

    # ------------------------------------------------------------------ training
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        return F.cross_entropy(output.float().transpose(1, 2), x0, reduction="none")

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return _ORACLE_LOGIT * F.one_hot(x0, self.K).float()

    # ------------------------------------------------------------------ vector field
    def conditional_field(self, x: Tensor, target: Tensor, alpha: Tensor) -> Tensor:
        """u(x | e_target) = C(x_target, alpha) (e_target - x): ``x (B, L, K)``, ``target (B, L)``,
        ``alpha (B,)`` -> ``(B, L, K)`` float64."""
        return self.marginal_field(F.one_hot(target, self.K).double(), x, alpha)

    def marginal_field(self, probs: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
        """v(x) = sum_i p(e_i | x) C(x_i, alpha) (e_i - x), ``(B, L, K)`` float64.

        Args:
            probs: ``(B, L, K)`` the denoiser's p(x_1 = e_i | x).
            x: ``(B, L, K)`` simplex points.
            alpha: ``(B,)``.
        """
        c = dirichlet_flow_c(x, alpha.double()[:, None, None], self.K)
        w = probs.double() * c
        return w - x.double() * w.sum(-1, keepdim=True)

    # ------------------------------------------------------------------ reverse process
    def time_grid(self, steps: int, *, device: Optional[torch.device] = None) -> Tensor:
        """``steps - 1`` Euler intervals uniform in alpha from 1 to ``alpha_max``, then the final
        interval to t = 0 (read-out of the tokens): ``steps`` network calls in all."""
        alphas = torch.linspace(1.0, self.alpha_max, steps, dtype=torch.float64)
        grid = torch.cat([self.public_time(alphas), torch.zeros(1, dtype=torch.float64)])
        return grid.float().to(device)

    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """Euler step of dx/dalpha = v(x) from alpha(t) to alpha(s); at s = 0 the vertex of the
        network's prediction (argmax or draw, per ``final_decode``)."""
        self.check_dilation(dilation)
        probs = torch.softmax(output.double(), dim=-1)
        final = (s <= 0)[:, None, None]
        if bool(final.any()):
            if self.final_decode == "argmax":
                tokens = probs.argmax(-1)
            else:
                tokens = sample_categorical(probs, generator=generator)
            vertex = F.one_hot(tokens, self.K).to(xt.dtype)
            if bool(final.all()):
                return vertex
        else:
            vertex = xt
        a_t = self.alpha(t)
        a_s = torch.where(s > 0, self.alpha(s.clamp_min(1e-30)), a_t)
        x = xt + (a_s - a_t)[:, None, None] * self.marginal_field(probs, xt, a_t)
        x = x.clamp_min(self.eps)
        x = x / x.sum(-1, keepdim=True)
        return torch.where(final, vertex, x)

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Known positions get an exact draw of Dir(1 + (alpha(t) - 1) e_x0), as in training."""
        fresh = self.dirichlet_draw(x0.clamp(0, self.K - 1), self.alpha(t), generator=generator)
        return torch.where(known[..., None], fresh.to(xt.dtype), xt)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return output.argmax(-1)

    def decode(self, xt: Tensor) -> Tensor:
        return xt.argmax(-1)

    def is_valid(self, xt: Tensor) -> bool:
        return (xt.dim() == 3 and xt.shape[-1] == self.K and xt.dtype == torch.float64
                and bool((xt >= 0).all()) and bool(((xt.sum(-1) - 1.0).abs() < 1e-9).all()))

    # ------------------------------------------------------------------ likelihood
    def decoder_log_normaliser(self, x: Tensor, alpha: Tensor) -> Tensor:
        """sum_l log sum_k q_alpha(x_l | k), ``x (B, L, K)``, ``alpha (B,)`` -> ``(B,)``, with
        q_alpha(x | k) = Gamma(alpha + K - 1) / Gamma(alpha) x_k^(alpha - 1) (w.r.t. Lebesgue
        measure on the first K - 1 coordinates)."""
        a = alpha.double()[:, None]
        log_c = torch.lgamma(a + self.K - 1) - torch.lgamma(a)
        lse = torch.logsumexp((a[..., None] - 1.0) * torch.log(x.double().clamp_min(1e-300)), dim=-1)
        return (log_c + lse).sum(-1)

    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100, divergence: str = "hutchinson",
                       alpha_end: Optional[float] = None) -> Tensor:
        """Upper bound on -log2 P(x0) per token from the flow's ODE likelihood.

        With x ~ q(x | x0) = Dir(1 + (alpha_end - 1) e_x0) and the Bayes decoder
        r(x0 | x) = prod_l q(x_l | x0_l) / sum_k q(x_l | k) (uniform prior over letters),
            -log P(x0) <= E_x [ -log p_theta,alpha_end(x) + sum_l log sum_k q(x_l | k) ],
        where log p_theta,alpha_end comes from the instantaneous change of variables along the
        learned ODE from alpha_end back to alpha = 1 (flat Dirichlet, log density log (K-1)! per
        position in the coordinates x_1 .. x_{K-1}). Heun steps uniform in alpha; the
        divergence is exact (autograd, one backward pass per coordinate) or Hutchinson's
        estimator (a fresh Rademacher probe at every evaluation: unbiased given the deterministic
        path, and far less spread than one probe fixed along it; ``ddsm.processes._ode_likelihood``).

        Args:
            steps: Heun steps of the ODE.
            divergence: ``"hutchinson"`` or ``"exact"``.
            alpha_end: where the data are noised (default ``alpha_max``); larger values tighten
                the decoder term but ask the network for concentrated inputs.
        """
        if divergence not in ("hutchinson", "exact"):
            raise ValueError("divergence must be 'hutchinson' or 'exact'")
        if pad_mask is not None and not bool(pad_mask.all()):
            raise ValueError("likelihoods of padded sequences are not supported by dirichlet-fm")
        B, L = x0.shape
        a_end = float(self.alpha_max if alpha_end is None else alpha_end)
        alpha0 = torch.full((B,), a_end, dtype=torch.float64, device=x0.device)
        x = self.dirichlet_draw(x0, alpha0, generator=generator)
        log_norm = self.decoder_log_normaliser(x, alpha0)

        def probe() -> Optional[Tensor]:
            if divergence != "hutchinson":
                return None
            return _rng.rademacher((B, L, self.K - 1), generator=generator, device=x0.device, dtype=torch.float64)

        h = (1.0 - a_end) / steps  # integrate backwards in alpha
        acc = torch.zeros(B, dtype=torch.float64, device=x0.device)
        a = alpha0.clone()
        for _ in range(steps):
            k1, d1 = self._field_and_divergence(model, x, a, cond, probe())
            x_pred = self._renormalise(x + h * k1)
            k2, d2 = self._field_and_divergence(model, x_pred, a + h, cond, probe())
            x = self._renormalise(x + 0.5 * h * (k1 + k2))
            acc = acc + 0.5 * h * (d1 + d2)
            a = a + h
        # log p_end(x_end) = log p_1(x(1)) - int_1^end div v dalpha = log p_1 + acc (h < 0).
        log_p = L * math.lgamma(self.K) + acc
        return (-log_p + log_norm) / (L * math.log(2.0))

    def _renormalise(self, x: Tensor) -> Tensor:
        x = x.clamp_min(1e-300)
        return x / x.sum(-1, keepdim=True)

    def _field_and_divergence(self, model: ModelFn, x: Tensor, alpha: Tensor, cond: Optional[Tensor],
                              probe: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """v(x) ``(B, L, K)`` and its divergence ``(B,)`` in the coordinates z = x_1 .. x_{K-1}
        (x_K = 1 - sum z: the flow keeps sum x = 1)."""
        with torch.enable_grad():
            z = x[..., :-1].detach().double().requires_grad_(True)
            xf = torch.cat([z, 1.0 - z.sum(-1, keepdim=True)], dim=-1)
            out = self.model_output(model, xf, self.public_time(alpha).float(), cond)
            probs = torch.softmax(out.double(), dim=-1)
            v = self.marginal_field(probs, xf, alpha)
            vz = v[..., :-1]
            if probe is not None:
                (g,) = torch.autograd.grad((vz * probe).sum(), z)
                div = (g * probe).sum((-1, -2))
            else:
                flat = vz.reshape(vz.shape[0], -1)
                div = torch.zeros(vz.shape[0], dtype=torch.float64, device=x.device)
                for d in range(flat.shape[1]):
                    (g,) = torch.autograd.grad(flat[:, d].sum(), z, retain_graph=True)
                    div = div + g.reshape(g.shape[0], -1)[:, d]
        return v.detach(), div.detach()
