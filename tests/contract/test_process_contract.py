"""The contract every registered process passes unchanged (see docs/design.md).

A new process is one file plus one registry line; it must pass this file as it stands.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from ddsm.processes import PROCESSES, build_process
from ddsm.sampling import FixedPositions, sample

K, B, L = 4, 16, 12
NAMES = sorted(PROCESSES)


class Oracle:
    """A perfect model for data that is a point mass at ``x0``: it returns the process's ideal output."""

    takes_state = True

    def __init__(self, process, x0):
        self.process, self.x0 = process, x0

    def __call__(self, xt, t, cond=None):
        x0 = self.x0[: xt.shape[0]]
        return self.process.oracle_output(x0, xt, t)


@pytest.fixture(params=NAMES)
def process(request):
    return build_process(request.param, K)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def data(seed: int = 0, b: int = B, k: int = K) -> torch.Tensor:
    return torch.randint(0, k, (b, L), generator=gen(seed))


def test_registry_names_and_config_round_trip(process):
    assert PROCESSES[process.name] is type(process)
    assert isinstance(process.description, str) and process.description
    rebuilt = type(process)(**process.config())
    assert rebuilt.config() == process.config()


def test_prior_is_valid_and_decodes(process):
    xt = process.prior((B, L), generator=gen())
    assert process.is_valid(xt)
    tokens = process.decode(xt)
    assert tokens.shape == (B, L) and tokens.dtype == torch.long
    assert bool(((tokens >= 0) & (tokens < K)).all())
    feats = process.model_input(xt, torch.ones(B))
    assert feats.shape == (B, L, process.in_channels) and feats.dtype == torch.float32


def test_noisy_near_data_decodes_to_data(process):
    x0 = data(1, b=64)
    t = torch.full((64,), 1e-3)
    noisy = process.sample_noisy(x0, t, generator=gen(2))
    assert process.is_valid(noisy.xt)
    assert (process.decode(noisy.xt) == x0).float().mean() >= 0.99


def _state_samples(xt: torch.Tensor) -> list[np.ndarray]:
    """Per-channel samples of a state, for two-sample comparisons."""
    if xt.dtype == torch.long:
        return [xt.reshape(-1).numpy()]
    return [xt[..., c].reshape(-1).double().numpy() for c in range(xt.shape[-1])]


def test_noisy_at_one_matches_prior(process):
    n = 256
    x0 = data(3, b=n)
    noisy = process.sample_noisy(x0, torch.ones(n), generator=gen(4)).xt
    prior = process.prior((n, L), generator=gen(5))
    for a, b in zip(_state_samples(noisy), _state_samples(prior)):
        if a.dtype.kind in "iu":
            cats = np.union1d(np.unique(a), np.unique(b))
            table = np.array([[np.sum(a == c) for c in cats], [np.sum(b == c) for c in cats]])
            p = 1.0 if len(cats) == 1 else stats.chi2_contingency(table)[1]
        else:
            p = stats.ks_2samp(a, b).pvalue
        assert p > 1e-3, f"noisy state at t = 1 differs from the prior (p = {p:.2g})"


def test_loss_finite_gradients_and_padding(process):
    torch.manual_seed(0)
    from ddsm.models import build_model

    model = build_model("mlp", process.in_channels, process.out_channels, hidden=32)
    x0 = data(6)
    pad = torch.ones(B, L, dtype=torch.bool)
    pad[:, -3:] = False
    out = process.loss(model, x0, pad_mask=pad, generator=gen(7))
    assert torch.isfinite(out.loss) and out.terms.shape == (B, L)
    assert bool((out.terms[:, -3:] == 0).all())
    assert torch.allclose(out.loss, out.terms.sum() / pad.sum())
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_step_keeps_state_valid(process):
    xt = process.prior((B, L), generator=gen(8))
    grid = process.time_grid(5)
    g = gen(9)
    for t, s in zip(grid[:-1], grid[1:]):
        out = torch.randn(B, L, process.out_channels, generator=g)
        xt = process.step(out, xt, t.expand(B), s.expand(B), generator=g)
        assert process.is_valid(xt)


def test_oracle_round_trip_recovers_data(process):
    x0 = data(10)
    tokens = sample(process, Oracle(process, x0), (B, L), steps=50, generator=gen(11))
    assert (tokens == x0).float().mean() >= 0.99


def test_predicted_tokens_of_the_oracle_are_the_data(process):
    """Reward-guided sampling scores a particle by ``predict_tokens``: with the perfect output it
    must be the data, at any time, whatever the state."""
    x0 = data(20)
    for t in (0.9, 0.5, 0.1):
        t_b = torch.full((B,), t)
        xt = process.sample_noisy(x0, t_b, generator=gen(21)).xt
        pred = process.predict_tokens(process.oracle_output(x0, xt, t_b), xt, t_b)
        assert pred.shape == (B, L) and pred.dtype == torch.long
        assert torch.equal(pred, x0), (process.name, t)


def test_same_seed_same_samples(process):
    x0 = data(12)
    a = sample(process, Oracle(process, x0), (B, L), steps=10, generator=gen(13))
    b = sample(process, Oracle(process, x0), (B, L), steps=10, generator=gen(13))
    assert torch.equal(a, b)


def test_a_run_continued_from_a_recorded_state_is_the_same_run(process):
    """``sample(start=, times=grid[k:])`` with the generator as it stood at step k reproduces the
    run (on-policy recording branches runs this way): the loop draws nothing before the first step."""
    if "ancestral" not in process.samplers:
        pytest.skip("no grid loop")
    x0, g = data(16), gen(17)
    seen = []

    def hook(out, xt, t):
        seen.append((xt.clone(), g.get_state()))  # the step after this hook draws from this state
        return out

    kw = dict(steps=8, sampler="ancestral", return_state=True)
    full = sample(process, Oracle(process, x0), (B, L), generator=g, output_hook=hook, **kw)
    grid = process.time_grid(8)
    for k in (1, 5):
        again = torch.Generator().set_state(seen[k][1])
        rest = sample(process, Oracle(process, x0), (B, L), generator=again, start=seen[k][0],
                      times=grid[k:], **kw)
        assert torch.equal(rest, full), (process.name, k)
    with pytest.raises(ValueError, match="start has shape"):
        sample(process, Oracle(process, x0), (B + 1, L), start=seen[1][0], sampler="ancestral")


def test_fixed_positions_preserved(process):
    x0 = data(14)
    other = (x0 + 1) % K  # the oracle pulls toward `other`, the fixed positions demand x0
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, ::3] = True
    tokens = sample(process, Oracle(process, other), (B, L), steps=10, generator=gen(15),
                    fixed=FixedPositions(x0, mask))
    assert torch.equal(tokens[mask], x0[mask])
