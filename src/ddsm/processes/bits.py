"""Analog bits: Gaussian diffusion on real-valued codes of the tokens (Chen, Zhang, Hinton, ICLR 2023).

Encoding (``encoding``): ``"binary"`` writes token k as its C = ceil(log2 K) bits, most significant
first, mapped to {-scale, +scale}; ``"onehot"`` uses C = K channels, +scale at k and -scale elsewhere.

Forward process (variance preserving), with a log-SNR schedule lambda(t) decreasing from
``logsnr_max`` (t = 0) to ``logsnr_min`` (t = 1):

    z_t = alpha_t c(x0) + sigma_t eps,   alpha_t^2 = sigmoid(lambda_t),   sigma_t^2 = sigmoid(-lambda_t).

``schedule = "cosine"``: lambda(t) = -2 log tan(a t + b), the cosine schedule gamma_t = cos^2(pi t / 2)
truncated to [logsnr_min, logsnr_max]; ``"linear"``: lambda linear in t.

Network: predicts the code x0_hat (analog, C channels, for both encodings) and is trained by the
squared error sum_c (x0_hat - c)^2. Predictions are clipped to the code box [-scale, scale]^C before
they are used (sampling, self-conditioning, likelihood); the clip can only move them closer to
any code.

Self-conditioning: the network also sees its previous estimate of x0 (C more input channels). The
state therefore carries it: ``state = concat(z_t, x0_prev)``, ``(B, L, 2C)`` (``(B, L, C)`` without
self-conditioning), so that ``step`` stays a pure function of (output, state). Training feeds, on a
random half of the batch, the stop-gradient estimate of a first pass made with a zero estimate.

Sampling: DDIM (``eta = 0``: deterministic; ``eta = 1``: ancestral), with Chen et al.'s asymmetric
time intervals: the update from t aims at s - td (t - s) (clamped at 0) while the network was told t.
Decoding: the nearest valid code of z_t (threshold at 0 for binary, argmax for one-hot; a binary
pattern >= K goes to the nearest of the K valid codes).

Likelihood: VDM's continuous-time bound (Kingma et al. 2021), per token,

    -log P(x0) <= KL(q(z_1 | x0) || N(0, I)) + 1/2 int_0^1 (-SNR'(t)) E||c - x0_hat(z_t)||^2 dt
                  + E[-log p(x0 | z_0)],

with SNR = exp(lambda) and the discrete decoder p(k | z_0) propto q(z_0 | c_k) over the K codes.
The diffusion term weighs squared errors by SNR, so ``logsnr_max`` is kept moderate (5): beyond it
the decoder is exact anyway.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng as _rng
from .base import LossOutput, ModelFn, NoisySample, Process, reduce_terms

_ENCODINGS = ("binary", "onehot")
_SCHEDULES = ("cosine", "linear")


class BitsProcess(Process):
    """Analog-bit Gaussian diffusion with self-conditioning and a DDIM sampler."""

    name = "bits"
    description = "analog bits: Gaussian diffusion on {-1,+1} codes with self-conditioning, DDIM sampling"
    state_kind = "bits"
    classifier_guidance = "analog-bits"

    def __init__(self, K: int, encoding: str = "binary", self_condition: bool = True, scale: float = 1.0,
                 schedule: str = "cosine", logsnr_min: float = -10.0, logsnr_max: float = 5.0,
                 eta: float = 0.0, td: float = 0.0) -> None:
        """
        Args:
            K: number of categories.
            encoding: ``"binary"`` (ceil(log2 K) channels) or ``"onehot"`` (K channels).
            self_condition: feed the previous x0 estimate to the network.
            scale: codes are +-scale (Chen et al. find scales below 1 can help).
            schedule: ``"cosine"`` or ``"linear"`` (in log-SNR).
            logsnr_min: log-SNR at t = 1.
            logsnr_max: log-SNR at t = 0. At 5 the codes (2 scale apart) are > 20 sigma apart, so
                decoding and the decoder term are already exact; larger values only add
                exp(lambda)-weighted high-SNR errors to the likelihood bound (a briefly trained
                toy model: 1.1 bits/token at 5, 64 at 10).
            eta: DDIM stochasticity (0 = deterministic, 1 = ancestral).
            td: asymmetric time difference, in units of the current step.
        """
        super().__init__(K)
        if encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {_ENCODINGS}, got {encoding!r}")
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")
        if not logsnr_min < logsnr_max:
            raise ValueError("logsnr_min must be below logsnr_max")
        if scale <= 0 or eta < 0 or td < 0:
            raise ValueError("scale must be > 0, eta and td >= 0")
        self.encoding, self.self_condition, self.scale = encoding, bool(self_condition), float(scale)
        self.schedule, self.logsnr_min, self.logsnr_max = schedule, float(logsnr_min), float(logsnr_max)
        self.eta, self.td = float(eta), float(td)
        self.C = max(1, math.ceil(math.log2(K))) if encoding == "binary" else K
        self._codes = self._make_codes()

    def _make_codes(self) -> Tensor:
        """The K codes ``(K, C)`` float64 in {-scale, +scale}."""
        k = torch.arange(self.K)
        if self.encoding == "binary":
            shifts = torch.arange(self.C - 1, -1, -1)  # most significant bit first
            bits = (k[:, None] >> shifts[None, :]) & 1
        else:
            bits = F.one_hot(k, self.K)
        return (2.0 * bits.double() - 1.0) * self.scale

    def codes(self, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """The K codes ``(K, C)``."""
        return self._codes.to(device=device, dtype=dtype)

    def encode(self, x0: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Tokens ``(B, L)`` -> codes ``(B, L, C)``."""
        return self.codes(x0.device, dtype)[x0]

    # ------------------------------------------------------------------ schedule
    def logsnr(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """lambda(t) and d lambda / dt, float64, shaped like ``t``."""
        t = t.double()
        lo, hi = self.logsnr_min, self.logsnr_max
        if self.schedule == "linear":
            return hi + (lo - hi) * t, torch.full_like(t, lo - hi)
        b = math.atan(math.exp(-0.5 * hi))
        a = math.atan(math.exp(-0.5 * lo)) - b
        ang = a * t + b
        return -2.0 * torch.log(torch.tan(ang)), -4.0 * a / torch.sin(2.0 * ang)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Signal and noise scales ``alpha_t, sigma_t`` (float64, shaped like ``t``)."""
        lam, _ = self.logsnr(t)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return 2 * self.C if self.self_condition else self.C

    @property
    def out_channels(self) -> int:
        return self.C

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        """The state is already the features: ``(B, L, in_channels)`` float32."""
        return xt.float()

    def _with_estimate(self, z: Tensor, x0_hat: Optional[Tensor]) -> Tensor:
        """State ``(B, L, in_channels)`` from noisy codes ``z (B, L, C)`` and an x0 estimate (zeros if None)."""
        if not self.self_condition:
            return z
        return torch.cat([z, torch.zeros_like(z) if x0_hat is None else x0_hat.to(z.dtype)], dim=-1)

    def clip(self, x0_hat: Tensor) -> Tensor:
        """Project an estimate onto the code box [-scale, scale]^C."""
        return x0_hat.clamp(-self.scale, self.scale)

    # ------------------------------------------------------------------ forward process
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        """Standard normal codes and a zero estimate: ``(B, L, in_channels)`` float32."""
        z = _rng.randn((*shape, self.C), generator=generator, device=device)
        return self._with_estimate(z, None)

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        """z_t = alpha_t c + sigma_t eps with a zero self-conditioning estimate; target = c ``(B, L, C)``."""
        c = self.encode(x0, torch.float64)
        alpha, sigma = self.alpha_sigma(t)
        eps = _rng.randn(c.shape, generator=generator, device=x0.device, dtype=torch.float64)
        z = alpha[:, None, None] * c + sigma[:, None, None] * eps
        return NoisySample(xt=self._with_estimate(z.float(), None), t=t, target=c.float())

    # ------------------------------------------------------------------ training
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        """Squared error of the predicted code, summed over channels: ``(B, L)``."""
        target = noisy.target if noisy.target is not None else self.encode(x0)
        return ((output.float() - target.to(output.device)) ** 2).sum(-1)

    def loss(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
             pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> LossOutput:
        """Training loss with self-conditioning: on a random half of the batch the network first
        predicts x0 from a zero estimate (no gradient), and the clipped prediction is then fed back."""
        t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        noisy = self.sample_noisy(x0, t, generator=generator)
        xt = noisy.xt
        if self.self_condition:
            use = _rng.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            if bool(use.any()):
                sub_cond = None if cond is None else cond[use]
                with torch.no_grad():
                    est = self.clip(self.model_output(model, xt[use], t[use], sub_cond).float())
                xt = xt.clone()
                xt[use, :, self.C:] = est.detach()
            noisy = NoisySample(xt=xt, t=t, target=noisy.target, extras={"self_conditioned": use})
        output = self.model_output(model, xt, t, cond)
        return reduce_terms(self.loss_terms(output, x0, noisy), pad_mask)

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The exact code of x0, ``(B, L, C)`` float32."""
        return self.encode(x0.clamp(0, self.K - 1))

    def denoise(self, model: ModelFn, z: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Clipped x0 estimate ``(B, L, C)`` from noisy codes ``z (B, L, C)`` alone: two passes with
        self-conditioning (zero estimate, then the first estimate), as in training."""
        est = self.clip(self.model_output(model, self._with_estimate(z, None), t, cond).float())
        if self.self_condition:
            est = self.clip(self.model_output(model, self._with_estimate(z, est), t, cond).float())
        return est

    # ------------------------------------------------------------------ reverse process
    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """DDIM update from t toward s' = max(s - td (t - s), 0); writes the new estimate into the state.

        z_s' = alpha_s' x0_hat + sqrt(sigma_s'^2 - c^2) eps_hat + c noise,
        eps_hat = (z_t - alpha_t x0_hat) / sigma_t,   c = eta sigma_s' / sigma_t sqrt(1 - alpha_t^2 / alpha_s'^2).
        """
        self.check_dilation(dilation)
        x0_hat = self.clip(output.double())
        z = xt[..., : self.C].double()
        s_eff = (s.double() - self.td * (t.double() - s.double())).clamp_min(0.0)
        lam_t, _ = self.logsnr(t)
        lam_s, _ = self.logsnr(s_eff)
        alpha_t, sigma_t = torch.sigmoid(lam_t).sqrt(), torch.sigmoid(-lam_t).sqrt()
        alpha_s, sigma_s = torch.sigmoid(lam_s).sqrt(), torch.sigmoid(-lam_s).sqrt()
        eps_hat = (z - alpha_t[:, None, None] * x0_hat) / sigma_t[:, None, None]
        # 1 - alpha_t^2 / alpha_s^2 without cancellation, from log-sigmoids of the log-SNRs
        shrink = -torch.expm1(F.logsigmoid(lam_t) - F.logsigmoid(lam_s)).clamp_min(0.0)
        c = self.eta * sigma_s / sigma_t * shrink.sqrt()
        keep = (sigma_s**2 - c**2).clamp_min(0.0).sqrt()
        z_s = alpha_s[:, None, None] * x0_hat + keep[:, None, None] * eps_hat
        if self.eta > 0:
            noise = _rng.randn(z.shape, generator=generator, device=z.device, dtype=torch.float64)
            z_s = z_s + c[:, None, None] * noise
        return self._with_estimate(z_s.to(xt.dtype), x0_hat)

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Known positions get an exact draw of q(z_t | x0) and their code as the x0 estimate."""
        x0 = x0.clamp(0, self.K - 1)
        z = self.sample_noisy(x0, t, generator=generator).xt[..., : self.C]
        fresh = self._with_estimate(z, self.encode(x0))
        return torch.where(known[..., None], fresh.to(xt.dtype), xt)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The nearest valid code of the clipped x0 estimate."""
        return self.decode(self.clip(output.double()))

    def decode(self, xt: Tensor) -> Tensor:
        """Nearest valid code of the noisy channels: ``(B, L)`` long."""
        z = xt[..., : self.C]
        if self.encoding == "onehot":
            return z.argmax(-1)
        weights = 2 ** torch.arange(self.C - 1, -1, -1, device=z.device)
        tokens = ((z > 0).long() * weights).sum(-1)
        bad = tokens >= self.K
        if bool(bad.any()):
            dist = torch.cdist(z[bad].double(), self.codes(z.device))  # (n_bad, K)
            tokens[bad] = dist.argmin(-1)
        return tokens

    def is_valid(self, xt: Tensor) -> bool:
        return (xt.dim() == 3 and xt.shape[-1] == self.in_channels and xt.is_floating_point()
                and bool(torch.isfinite(xt).all()))

    # ------------------------------------------------------------------ likelihood
    def prior_kl(self, x0: Tensor) -> Tensor:
        """KL(q(z_1 | x0) || N(0, I)) per token, ``(B, L)`` float64 nats."""
        lam, _ = self.logsnr(torch.ones((), dtype=torch.float64))
        a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
        c2 = (self.encode(x0, torch.float64) ** 2).sum(-1)
        return 0.5 * (a2 * c2 + self.C * (s2 - 1.0 - torch.log(s2)))

    def reconstruction_nll(self, x0: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """-log p(x0 | z_0) with z_0 ~ q(z_0 | x0) and p(k | z_0) propto q(z_0 | c_k): ``(B, L)`` nats."""
        t0 = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
        alpha, sigma = self.alpha_sigma(t0)
        codes = self.codes(x0.device)
        c = codes[x0]
        eps = _rng.randn(c.shape, generator=generator, device=x0.device, dtype=torch.float64)
        z = alpha[:, None, None] * c + sigma[:, None, None] * eps
        dist2 = ((z[..., None, :] - alpha[:, None, None, None] * codes) ** 2).sum(-1)  # (B, L, K)
        logits = -dist2 / (2.0 * sigma[:, None, None] ** 2)
        return -torch.log_softmax(logits, dim=-1).gather(-1, x0[..., None]).squeeze(-1)

    @torch.no_grad()
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100) -> Tensor:
        """VDM upper bound on -log2 P(x0) per real token, ``(B,)``.

        The diffusion integral is estimated at ``steps`` stratified times (one uniform offset per
        sequence, one noise draw per time); each costs one network call (two with self-conditioning).
        """
        B, L = x0.shape
        real = torch.ones(B, L, dtype=torch.float64, device=x0.device) if pad_mask is None \
            else pad_mask.to(torch.float64)
        c = self.encode(x0, torch.float64)
        total = ((self.prior_kl(x0) + self.reconstruction_nll(x0, generator=generator)) * real).sum(-1)
        u = _rng.rand(B, generator=generator, device=x0.device, dtype=torch.float64)
        for j in range(steps):
            t = ((u + j) / steps).float()
            z = self.sample_noisy(x0, t, generator=generator).xt[..., : self.C]
            est = self.denoise(model, z, t, cond).double()
            lam, dlam = self.logsnr(t)
            weight = 0.5 * torch.exp(lam) * (-dlam)  # -SNR'(t) / 2
            err = ((c - est) ** 2).sum(-1)
            total += weight * (err * real).sum(-1) / steps
        return total / (real.sum(-1).clamp_min(1.0) * math.log(2.0))
