"""Analytic checks of the analog-bits process (Gaussian diffusion on {-1, +1} codes)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from ddsm.processes import build_process
from ddsm.processes.bits import BitsProcess

torch.set_num_threads(1)

ENCODINGS = ("binary", "onehot")
SCHEDULES = ("cosine", "linear")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- codes and schedule
def test_codes_and_channels():
    p = BitsProcess(5)
    assert p.C == 3 and p.in_channels == 6 and p.out_channels == 3
    codes = p.codes()
    assert codes.shape == (5, 3) and len({tuple(c.tolist()) for c in codes}) == 5
    assert torch.equal(codes[5 - 1], torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # 4 = 100
    assert BitsProcess(2).C == 1 and BitsProcess(4).C == 2
    q = BitsProcess(5, encoding="onehot", self_condition=False, scale=0.5)
    assert q.C == 5 and q.in_channels == 5
    assert torch.equal(q.codes(), 0.5 * (2 * torch.eye(5, dtype=torch.float64) - 1))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("K", [2, 5, 8])
def test_decode_inverts_encode(encoding, K):
    p = BitsProcess(K, encoding=encoding)
    x0 = torch.arange(K).repeat(3, 1)
    state = p._with_estimate(p.encode(x0), None)
    assert torch.equal(p.decode(state), x0)


def test_decode_maps_invalid_patterns_to_nearest_valid_code():
    p = BitsProcess(5)  # valid 000..100; 101, 110, 111 are not codes
    z = torch.tensor([[[0.9, 0.2, -0.5], [0.3, 0.8, 0.7], [0.2, -0.1, 0.1]]])
    # 110 -> 100 (4) is nearer than 010 (2); 111 -> 011 (3); 101 -> 100 (4) or 001 (1): 4 here
    assert p.decode(p._with_estimate(z, None)).tolist() == [[4, 3, 4]]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_endpoints_and_derivative(schedule):
    p = BitsProcess(4, schedule=schedule, logsnr_min=-9.0, logsnr_max=11.0)
    lam, _ = p.logsnr(torch.tensor([0.0, 1.0]))
    assert torch.allclose(lam, torch.tensor([11.0, -9.0], dtype=torch.float64), atol=1e-9)
    t = torch.linspace(0.02, 0.98, 9, dtype=torch.float64)
    h = 1e-6
    fd = (p.logsnr(t + h)[0] - p.logsnr(t - h)[0]) / (2 * h)
    assert torch.allclose(p.logsnr(t)[1], fd, rtol=1e-6)
    alpha, sigma = p.alpha_sigma(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t))
    if schedule == "cosine":  # gamma_t = alpha_t^2 is cos^2(pi t / 2) away from the truncation
        assert abs(float(p.alpha_sigma(torch.tensor([0.5]))[0] ** 2) - 0.5) < 0.01


# ---------------------------------------------------------------------------- forward and reverse
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_forward_marginals_ks(encoding):
    p = BitsProcess(3, encoding=encoding)
    n = 3000
    x0 = torch.full((n, 2), 2)
    code = p.encode(x0[:1, :1]).reshape(-1).double()
    for i, t in enumerate([0.1, 0.5, 0.9]):
        noisy = p.sample_noisy(x0, torch.full((n,), t), generator=gen(i))
        assert p.is_valid(noisy.xt) and bool((noisy.xt[..., p.C:] == 0).all())
        alpha, sigma = (float(v) for v in p.alpha_sigma(torch.tensor([t])))
        for c in range(p.C):
            sample = noisy.xt[..., c].reshape(-1).double().numpy()
            assert stats.kstest(sample, stats.norm(alpha * float(code[c]), sigma).cdf).pvalue > 1e-3


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_oracle_step_carries_marginals(eta, encoding):
    """z_t ~ q_t(. | c) and a DDIM step with the exact x0: z_s ~ q_s(. | c) for eta = 0 and 1."""
    p = BitsProcess(3, encoding=encoding, eta=eta)
    n, t, s = 4000, 0.8, 0.35
    x0 = torch.full((n, 1), 1)
    tt, ss = torch.full((n,), t), torch.full((n,), s)
    xt = p.sample_noisy(x0, tt, generator=gen(5)).xt
    xs = p.step(p.oracle_output(x0, xt, tt), xt, tt, ss, generator=gen(6))
    assert torch.equal(xs[..., p.C:], p.encode(x0))  # the estimate is written into the state
    alpha, sigma = (float(v) for v in p.alpha_sigma(torch.tensor([s])))
    code = p.encode(x0[:1]).reshape(-1)
    for c in range(p.C):
        sample = xs[..., c].reshape(-1).double().numpy()
        assert stats.kstest(sample, stats.norm(alpha * float(code[c]), sigma).cdf).pvalue > 1e-3


def test_ddim_with_exact_x0_is_deterministic_map():
    """eta = 0: z_s = alpha_s c + sigma_s eps_hat with the very eps of z_t."""
    p = BitsProcess(4)
    x0 = torch.randint(0, 4, (2, 5), generator=gen(7))
    t, s = torch.full((2,), 0.6), torch.full((2,), 0.2)
    c = p.encode(x0).double()
    eps = torch.randn(c.shape, generator=gen(8), dtype=torch.float64)
    (a_t, s_t), (a_s, s_s) = p.alpha_sigma(t[:1]), p.alpha_sigma(s[:1])
    xt = p._with_estimate((a_t * c + s_t * eps).float(), None)
    xs = p.step(p.oracle_output(x0, xt, t), xt, t, s)
    assert torch.allclose(xs[..., : p.C].double(), a_s * c + s_s * eps, atol=1e-5)


def test_asymmetric_time_interval():
    """td shifts the target time to s - td (t - s), clamped at 0."""
    g = gen(9)
    xt = torch.randn(3, 4, 4, generator=g)
    out = torch.randn(3, 4, 2, generator=g)
    t, s = torch.full((3,), 0.5), torch.full((3,), 0.4)
    shifted = BitsProcess(4, td=1.0).step(out, xt, t, s)
    plain = BitsProcess(4).step(out, xt, t, torch.full((3,), 0.3))
    assert torch.allclose(shifted, plain)
    last = BitsProcess(4, td=2.0).step(out, xt, torch.full((3,), 0.1), torch.full((3,), 0.05))
    assert torch.allclose(last, BitsProcess(4).step(out, xt, torch.full((3,), 0.1), torch.zeros(3)))


def test_impose_draws_noisy_code_and_sets_estimate():
    p = BitsProcess(4)
    n = 4000
    x0 = torch.full((n, 3), 2)
    known = torch.zeros(n, 3, dtype=torch.bool)
    known[:, 1] = True
    xt = p.prior((n, 3), generator=gen(10))
    t = torch.full((n,), 0.5)
    out = p.impose(xt, x0, known, t, generator=gen(11))
    assert torch.equal(out[:, [0, 2]], xt[:, [0, 2]])
    assert torch.equal(out[:, 1, p.C:], p.encode(x0[:, 1]))
    alpha, sigma = (float(v) for v in p.alpha_sigma(torch.tensor([0.5])))
    code = p.encode(x0[:1, 1]).reshape(-1)
    for c in range(p.C):
        dist = stats.norm(alpha * float(code[c]), sigma)
        assert stats.kstest(out[:, 1, c].double().numpy(), dist.cdf).pvalue > 1e-3


# ---------------------------------------------------------------------------- self-conditioning
class Recorder(torch.nn.Module):
    """A linear network that records its inputs and whether autograd was on."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(c_in, c_out)
        self.calls: list[tuple[torch.Tensor, bool, torch.Tensor]] = []

    def forward(self, x, t, cond=None):
        y = self.lin(x) * 3.0  # large outputs, so that clipping matters
        self.calls.append((x.detach().clone(), torch.is_grad_enabled(), y.detach().clone()))
        return y


def test_self_conditioning_training_pass():
    torch.manual_seed(0)
    p = BitsProcess(4)
    model = Recorder(p.in_channels, p.out_channels)
    x0 = torch.randint(0, 4, (64, 6), generator=gen(12))
    out = p.loss(model, x0, generator=gen(13))
    assert len(model.calls) == 2
    (x1, grad1, y1), (x2, grad2, _) = model.calls
    assert not grad1 and grad2
    n_used = x1.shape[0]
    assert 16 < n_used < 48 and x2.shape[0] == 64
    assert bool((x1[..., p.C:] == 0).all())  # first pass: zero estimate
    used = (x2[..., p.C:] != 0).any(-1).any(-1)
    assert int(used.sum()) == n_used
    assert torch.equal(x2[used][..., p.C:], y1.clamp(-1, 1))  # clipped stop-gradient estimate
    assert torch.equal(x2[used][..., : p.C], x1[..., : p.C])  # on the same noisy codes
    out.loss.backward()
    assert model.lin.weight.grad is not None


def test_no_self_conditioning_single_pass():
    p = BitsProcess(4, self_condition=False)
    model = Recorder(p.in_channels, p.out_channels)
    p.loss(model, torch.randint(0, 4, (8, 3), generator=gen(14)), generator=gen(15))
    assert len(model.calls) == 1 and model.calls[0][0].shape[-1] == p.C


# ---------------------------------------------------------------------------- likelihood
def _vlb_by_quadrature(p: BitsProcess, pi: np.ndarray) -> float:
    """The VDM bound for one token of K = 2 (one channel) under the exact denoiser, with
    Gauss-Legendre in t and a fine grid in the noise: nats, E over x0 ~ pi."""
    codes = p.codes().reshape(-1).numpy()  # (2,)
    eps = np.linspace(-12.0, 12.0, 6001)
    phi = stats.norm.pdf(eps) * (eps[1] - eps[0])
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t = torch.tensor(0.5 * nodes + 0.5)
    lam, dlam = (v.numpy()[:, None] for v in p.logsnr(t))
    alpha, sigma = (v.numpy()[:, None] for v in p.alpha_sigma(t))
    mse = np.zeros(len(t))
    for k in range(2):
        z = alpha * codes[k] + sigma * eps  # (T, E)
        logw = np.log(pi)[None, None] - (z[..., None] - alpha[..., None] * codes) ** 2 / (2 * sigma[..., None] ** 2)
        w = np.exp(logw - logw.max(-1, keepdims=True))
        x0_hat = (w * codes).sum(-1) / w.sum(-1)
        mse += pi[k] * ((codes[k] - x0_hat) ** 2 * phi).sum(-1)
    diffusion = float(np.sum(0.5 * weights * 0.5 * np.exp(lam[:, 0]) * -dlam[:, 0] * mse))
    prior = sum(pi[k] * float(p.prior_kl(torch.tensor([[k]]))) for k in range(2))
    a0, s0 = (float(v) for v in p.alpha_sigma(torch.zeros(1)))
    recon = 0.0
    for k in range(2):
        z = a0 * codes[k] + s0 * eps
        logits = -(z[:, None] - a0 * codes[None, :]) ** 2 / (2 * s0**2)
        logp = logits[:, k] - np.logaddexp(logits[:, 0], logits[:, 1])
        recon -= pi[k] * np.sum(phi * logp)
    return diffusion + prior + recon


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_exact_denoiser_vlb_equals_entropy_by_quadrature(schedule):
    """Continuous-time VLB of the Bayes-optimal denoiser = H(x0) (up to ~1e-6 prior/decoder
    terms), for either schedule (the bound depends on the schedule only through its endpoints)."""
    pi = np.array([0.7, 0.3])
    p = BitsProcess(2, schedule=schedule)
    entropy = float(-(pi * np.log(pi)).sum())
    bound = _vlb_by_quadrature(p, pi)
    assert entropy - 1e-6 <= bound < entropy + 1e-4
    # truncated log-SNR endpoints make the prior and decoder terms matter: still a bound, now loose
    loose = _vlb_by_quadrature(BitsProcess(2, schedule=schedule, logsnr_min=-3.0, logsnr_max=0.0), pi)
    assert loose > entropy + 0.03


class MixtureDenoiser:
    """E[c(x0) | z_t] for data drawn from sequences ``S (M, L)`` with probabilities ``pi (M,)``."""

    def __init__(self, p: BitsProcess, S: torch.Tensor, pi: torch.Tensor, temper: float = 1.0) -> None:
        self.p, self.S, self.log_pi, self.temper = p, S, pi.log(), temper

    def __call__(self, feats: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        z = feats[..., : self.p.C].double()
        alpha, sigma = self.p.alpha_sigma(t)
        codes = self.p.codes()[self.S]  # (M, L, C)
        d2 = ((z[:, None] - alpha[:, None, None, None] * codes[None]) ** 2).sum((-1, -2))
        w = torch.softmax((self.log_pi[None] - d2 / (2 * sigma[:, None] ** 2)) * self.temper, -1)
        return torch.einsum("bm,mlc->blc", w, codes).float()


def _toy(kind: str) -> tuple[int, torch.Tensor, torch.Tensor]:
    if kind == "copy":
        pi = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
        return 4, torch.arange(4)[:, None].repeat(1, 2), pi
    marg = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    S = torch.tensor(list(itertools.product(range(3), repeat=3)))
    return 3, S, marg[S].prod(-1)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("kind", ["copy", "independent"])
def test_bits_per_token_exact_denoiser_matches_entropy(encoding, kind):
    """Monte-Carlo bits_per_token with the exact denoiser: its excess over each sequence's
    -log2 P(x0) averages to ~0, and a mis-specified denoiser's bound is above the entropy."""
    K, S, pi = _toy(kind)
    M, L = S.shape
    p = BitsProcess(K, encoding=encoding)
    g = gen(16)
    idx = torch.multinomial(pi, 1024, replacement=True, generator=g)
    x0 = S[idx]
    bits = p.bits_per_token(MixtureDenoiser(p, S, pi), x0, generator=g, steps=40) * L
    gap = bits + pi[idx].log() / math.log(2.0)
    se = float(gap.std()) / math.sqrt(len(gap))
    assert abs(float(gap.mean())) < 4 * se + 5e-3
    entropy = float(-(pi * pi.log()).sum()) / math.log(2.0)
    worse = p.bits_per_token(MixtureDenoiser(p, S, torch.full_like(pi, 1.0 / M), temper=0.5), x0,
                             generator=g, steps=40) * L
    assert float(worse.mean()) > entropy + 0.1


def test_bits_per_token_oracle_and_padding():
    p = BitsProcess(5)
    x0 = torch.randint(0, 5, (3, 6), generator=gen(17))
    pad = torch.ones(3, 6, dtype=torch.bool)
    pad[:, 4:] = False

    class Oracle:
        takes_state = True

        def __call__(self, xt, t, cond=None):
            return p.oracle_output(x0[: xt.shape[0]], xt, t)

    bits = p.bits_per_token(Oracle(), x0, pad_mask=pad, generator=gen(18), steps=10)
    assert bits.shape == (3,) and float(bits.max()) < 1e-3 and float(bits.min()) >= 0.0


def test_registry_and_config():
    p = build_process("bits", 6, encoding="onehot", self_condition=False, scale=0.5, td=0.5)
    assert isinstance(p, BitsProcess)
    assert BitsProcess(**p.config()).config() == p.config()
    with pytest.raises(ValueError):
        BitsProcess(6, encoding="gray")
