"""The left-to-right LM process (ddsm.processes.autoregressive) against analytic ground truth.

- The clock fills positions left to right: the grid with steps = L reveals one position per step.
- Input alignment: the output at position i never sees x_i (shifted input + causal network).
- A Markov chain written as a network: the exact NLL in closed form, and the loop sampler's
  initial/transition frequencies (chi-square).
- ``generate`` (KV cache) == ``generate`` (no cache) == the loop with steps = L at one seed.
- Temperature and top-k; fixed tokens act as left context only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from torch import nn

from ddsm.models import build_model
from ddsm.processes import build_process
from ddsm.processes.autoregressive import AutoregressiveProcess
from ddsm.sampling import FixedPositions, sample


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class MarkovChain(nn.Module):
    """p(x_0) = init, p(x_i | x_{i-1}) = T[x_{i-1}], as a network on the process's features:
    the shifted one-hot (B, L, K + 1) times a (K + 1, K) table of log-probabilities."""

    def __init__(self, init: torch.Tensor, T: torch.Tensor):
        super().__init__()
        self.log_table = nn.Parameter(torch.log(torch.cat([T, init[None]], 0)).float(), requires_grad=False)

    def forward(self, x, t, cond=None):
        return x @ self.log_table

    def nll(self, x0: torch.Tensor) -> torch.Tensor:
        """Exact -log p(x0), (B,) float64."""
        table = self.log_table.double()
        K = table.shape[1]
        prev = torch.cat([torch.full_like(x0[:, :1], K), x0[:, :-1]], 1)
        return -table[prev, x0].sum(-1)


def chain(K: int = 3, seed: int = 0) -> MarkovChain:
    g = gen(seed)
    init = torch.rand(K, generator=g) + 0.2
    T = torch.rand(K, K, generator=g) + 0.1
    return MarkovChain(init / init.sum(), T / T.sum(-1, keepdim=True))


def tiny_transformer(K: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("transformer", K + 1, K, d_model=32, n_layers=2, n_heads=2, max_len=64, causal=True)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Clock, state and inputs.


def test_clock_fills_left_to_right():
    p = AutoregressiveProcess(4)
    L = 12
    grid = p.time_grid(L)
    assert p.filled(grid, L).tolist() == list(range(L + 1))
    n = p.filled(p.time_grid(50), L)
    assert int(n[0]) == 0 and int(n[-1]) == L and bool((n[1:] >= n[:-1]).all())
    n5 = p.filled(p.time_grid(5), L)  # fewer steps than positions: several per step
    assert int(n5[-1]) == L and bool((n5[1:] - n5[:-1] >= 2).all())


def test_noisy_state_is_a_prefix():
    p = AutoregressiveProcess(4)
    x0 = torch.randint(0, 4, (3, 10), generator=gen(1))
    xt = p.sample_noisy(x0, torch.tensor([1.0, 0.55, 0.0])).xt
    assert bool((xt[0] == 4).all()) and torch.equal(xt[2], x0[2])
    assert torch.equal(xt[1, :5], x0[1, :5]) and bool((xt[1, 5:] == 4).all())
    assert bool((p.sample_time(8) == 0).all())  # teacher forcing


def test_input_is_shifted_behind_bos():
    K = 4
    p = AutoregressiveProcess(K)
    x0 = torch.randint(0, K, (2, 6), generator=gen(2))
    feats = p.model_input(x0, torch.zeros(2))
    assert feats.shape == (2, 6, K + 1) and feats.dtype == torch.float32
    assert bool((feats[:, 0].argmax(-1) == K).all())
    assert torch.equal(feats[:, 1:].argmax(-1), x0[:, :-1])


def test_outputs_at_i_do_not_see_x_i():
    K, L = 4, 10
    p = AutoregressiveProcess(K)
    model = tiny_transformer(K)
    x0 = torch.randint(0, K, (2, L), generator=gen(3))
    j = 6
    x1 = x0.clone()
    x1[:, j] = (x1[:, j] + 1) % K
    t = torch.zeros(2)
    with torch.no_grad():
        a, b = p.model_output(model, x0, t), p.model_output(model, x1, t)
    assert torch.equal(a[:, : j + 1], b[:, : j + 1])  # positions <= j predict from x_<j
    assert not torch.allclose(a[:, j + 1 :], b[:, j + 1 :])


def test_loss_is_teacher_forced_cross_entropy():
    K, L = 4, 8
    p = AutoregressiveProcess(K)
    model = tiny_transformer(K)
    x0 = torch.randint(0, K, (3, L), generator=gen(4))
    out = p.loss(model, x0, generator=gen(5))
    with torch.no_grad():
        logits = model(p.model_input(x0, torch.zeros(3)), torch.zeros(3))
    expected = -torch.log_softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
    torch.testing.assert_close(out.terms.detach(), expected)


# --------------------------------------------------------------------------------------------
# Likelihood and sampling of a known chain.


def test_bits_per_token_is_the_exact_nll():
    K, B, L = 3, 5, 9
    p = AutoregressiveProcess(K)
    model = chain(K)
    x0 = torch.randint(0, K, (B, L), generator=gen(6))
    bits = p.bits_per_token(model, x0)
    torch.testing.assert_close(bits, model.nll(x0) / (L * math.log(2)), rtol=1e-6, atol=1e-6)
    # right padding: only the real prefix counts
    pad = torch.ones(B, L, dtype=torch.bool)
    pad[:, 6:] = False
    bits_pad = p.bits_per_token(model, x0, pad_mask=pad)
    torch.testing.assert_close(bits_pad, model.nll(x0[:, :6]) / (6 * math.log(2)), rtol=1e-6, atol=1e-6)


def test_bits_of_the_true_model_average_the_entropy_rate():
    # i.i.d. letters (all transition rows equal): bits/token -> entropy, never below on average
    K, B, L = 3, 4000, 4
    pi = torch.tensor([0.5, 0.3, 0.2])
    model = MarkovChain(pi, pi.expand(K, K).clone())
    x0 = torch.multinomial(pi, B * L, replacement=True, generator=gen(7)).reshape(B, L)
    bits = AutoregressiveProcess(K).bits_per_token(model, x0)
    entropy = float(-(pi * torch.log2(pi)).sum())
    assert abs(float(bits.mean()) - entropy) < 4 * float(bits.std()) / math.sqrt(B)


def test_loop_sampler_draws_the_chain():
    K, B, L = 3, 3000, 5
    p = AutoregressiveProcess(K)
    model = chain(K, seed=1)
    x = sample(p, model, (B, L), steps=L, generator=gen(8))
    table = torch.exp(model.log_table.double())
    table = (table / table.sum(-1, keepdim=True)).numpy()  # exact normalisation for chisquare
    init, T = table[K], table[:K]
    counts = np.bincount(x[:, 0].numpy(), minlength=K)
    assert stats.chisquare(counts, init * B).pvalue > 1e-3
    prev, nxt = x[:, :-1].reshape(-1).numpy(), x[:, 1:].reshape(-1).numpy()
    for k in range(K):
        row = np.bincount(nxt[prev == k], minlength=K)
        assert stats.chisquare(row, T[k] * row.sum()).pvalue > 1e-3


def test_generate_matches_loop_and_cache_matches_no_cache():
    K, B, L = 4, 6, 10
    p = AutoregressiveProcess(K)
    model = tiny_transformer(K, seed=3)
    cond = None
    with_cache = p.generate(model, (B, L), cond=cond, generator=gen(9))
    no_cache = p.generate(model, (B, L), cond=cond, generator=gen(9), use_cache=False)
    loop = sample(p, model, (B, L), steps=L, generator=gen(9))
    assert torch.equal(with_cache, no_cache) and torch.equal(with_cache, loop)
    assert bool(((with_cache >= 0) & (with_cache < K)).all())
    other = p.generate(model, (B, L), generator=gen(10))
    assert not torch.equal(other, with_cache)


def test_generate_with_class_conditioning():
    K, B, L = 4, 4, 7
    p = AutoregressiveProcess(K)
    torch.manual_seed(0)
    model = build_model("transformer", K + 1, K, n_classes=3, d_model=32, n_layers=1, n_heads=2,
                        max_len=16, causal=True).eval()
    cond = torch.tensor([0, 1, 2, 1])
    a = p.generate(model, (B, L), cond=cond, generator=gen(11))
    b = p.generate(model, (B, L), cond=cond, generator=gen(11), use_cache=False)
    c = sample(p, model, (B, L), steps=L, cond=cond, generator=gen(11))
    assert torch.equal(a, b) and torch.equal(a, c)


def test_few_steps_fill_every_position():
    K, B, L = 4, 3, 12
    p = AutoregressiveProcess(K)
    xt = sample(p, tiny_transformer(K), (B, L), steps=4, generator=gen(12), return_state=True)
    assert p.is_valid(xt) and bool((xt < K).all())


# --------------------------------------------------------------------------------------------
# Temperature, top-k, fixed positions.


def test_temperature_and_top_k():
    p = AutoregressiveProcess(4, temperature=0.5, top_k=2)
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    probs = p.token_probs(logits)
    w = torch.exp(logits.double() / 0.5)
    w[0, [0, 3]] = 0.0
    torch.testing.assert_close(probs, w / w.sum())
    plain = p.token_probs(logits, temperature=1.0, top_k=0)
    torch.testing.assert_close(plain, torch.softmax(logits.double(), -1))
    greedy = p.token_probs(logits, temperature=0.0)
    assert greedy.tolist() == [[0.0, 1.0, 0.0, 0.0]]


def test_top_one_and_greedy_generation_agree():
    K, B, L = 4, 3, 8
    model = tiny_transformer(K, seed=5)
    greedy = build_process("autoregressive", K, temperature=0.0)
    top1 = build_process("autoregressive", K, top_k=1)
    a = greedy.generate(model, (B, L), generator=gen(13))
    b = sample(top1, model, (B, L), steps=L, generator=gen(14))
    assert torch.equal(a, b)


def test_fixed_token_is_left_context_for_later_positions():
    # a deterministic chain: x_0 = 0, x_i = x_{i-1} + 1 mod K
    K, B, L = 5, 2, 9
    eye = torch.eye(K)
    T = torch.roll(eye, 1, dims=1) * 0.999 + 0.001 / K
    model = MarkovChain(eye[0] * 0.999 + 0.001 / K, T / T.sum(-1, keepdim=True))
    p = AutoregressiveProcess(K, temperature=0.0)
    fixed = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.bool)
    fixed[:, 4], mask[:, 4] = 1, True
    x = sample(p, model, (B, L), steps=L, generator=gen(15), fixed=FixedPositions(fixed, mask))
    expected = torch.tensor([0, 1, 2, 3, 1, 2, 3, 4, 0])  # before: unaffected; after: continue from 1
    assert torch.equal(x, expected.expand(B, L))
