"""DDSM's Jacobi process: stick-breaking maths, stationarity, exact-score sampling and likelihoods."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from ddsm.processes import JacobiProcess, JacobiScoreProcess
from ddsm.sampling import sample
from ddsm.special.stickbreaking import (
    log_det_dx_dv,
    score_v_to_x,
    score_x_to_v,
    simplex_to_sticks,
    sticks_to_simplex,
)


class Oracle:
    takes_state = True

    def __init__(self, process, x0):
        self.process, self.x0 = process, x0

    def __call__(self, xt, t, cond=None):
        return self.process.oracle_output(self.x0[: xt.shape[0]], xt, t)


@pytest.mark.parametrize("K", [2, 3, 4, 7])
def test_stick_breaking_round_trip_and_log_det_against_autograd(K):
    g = torch.Generator().manual_seed(K)
    v = torch.rand(5, K - 1, generator=g, dtype=torch.float64) * 0.98 + 0.01
    x = sticks_to_simplex(v)
    assert torch.allclose(x.sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-14)
    assert bool((x > 0).all())
    assert torch.allclose(simplex_to_sticks(x), v, atol=1e-13)
    for row in v:
        jac = torch.autograd.functional.jacobian(lambda vv: sticks_to_simplex(vv)[:-1], row)
        assert math.isclose(torch.logdet(jac).item(), log_det_dx_dv(row).item(), rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("K", [3, 4, 6])
def test_score_transforms_against_autograd(K):
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(K, generator=g, dtype=torch.float64) * 3 + 0.3  # a Dirichlet density in x
    v = torch.rand(4, K - 1, generator=g, dtype=torch.float64) * 0.9 + 0.05

    def log_pv(vv):
        return ((alpha - 1) * torch.log(sticks_to_simplex(vv))).sum(-1) + log_det_dx_dv(vv)

    vv = v.clone().requires_grad_(True)
    (s_v,) = torch.autograd.grad(log_pv(vv).sum(), vv)
    s_x = (alpha - 1) / sticks_to_simplex(v)  # ambient gradient of log p_x
    assert torch.allclose(score_x_to_v(s_x, v), s_v, atol=1e-10)
    back = score_v_to_x(s_v, v)
    assert torch.allclose(back, s_x - s_x.mean(-1, keepdim=True), atol=1e-9)
    assert torch.allclose(score_x_to_v(back, v), s_v, atol=1e-9)


@pytest.mark.parametrize("K", [3, 4])
def test_largest_time_is_flat_dirichlet(K):
    p = JacobiProcess(K)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, K, (400, 50), generator=g)
    v = p.sample_noisy(x0, torch.ones(400), generator=g).xt
    x = sticks_to_simplex(v).reshape(-1, K).numpy()
    for k in range(K):  # the marginals of Dirichlet(1, ..., 1) are Beta(1, K - 1)
        assert stats.kstest(x[:, k], stats.beta(1, K - 1).cdf).pvalue > 1e-3


def test_normalised_targets_have_unit_scale():
    p = JacobiScoreProcess(4)
    g = torch.Generator().manual_seed(2)
    for t in (0.05, 0.3, 0.9):
        x0 = torch.randint(0, 4, (200, 50), generator=g)
        target = p.sample_noisy(x0, torch.full((200,), t), generator=g).target
        m2 = (target.double() ** 2).mean((0, 1))
        assert bool(((m2 > 0.6) & (m2 < 1.6)).all()), (t, m2)


@pytest.mark.parametrize("dilation,after", [(1.0, 1.0), (2.0, 1.0), (4.0, 0.3)])
def test_exact_score_sampler_recovers_the_sequence(dilation, after):
    p = JacobiProcess(4)
    x0 = torch.randint(0, 4, (6, 40), generator=torch.Generator().manual_seed(3))
    out = sample(p, Oracle(p, x0), (6, 40), steps=40, dilation=dilation, dilation_after=after,
                 generator=torch.Generator().manual_seed(4))
    assert torch.equal(out, x0)


def test_explicit_time_grid_replaces_the_process_grid():
    p = JacobiScoreProcess(4)  # its final state is the SDE's (the posterior output ends on a drawn vertex)
    x0 = torch.randint(0, 4, (6, 40), generator=torch.Generator().manual_seed(3))
    run = lambda **kw: sample(p, Oracle(p, x0), (6, 40), generator=torch.Generator().manual_seed(4),  # noqa: E731
                              return_state=True, **kw)
    assert torch.equal(run(steps=40), run(steps=7, times=p.time_grid(40)))  # times wins over steps
    assert not torch.equal(run(steps=40), run(times=p.time_grid(20)))
    for bad in (p.time_grid(5).flip(0), torch.ones(3), p.time_grid(1)[:1]):  # noqa: B007
        with pytest.raises(ValueError, match="decreasing"):
            run(times=bad)


def test_ode_log_density_of_exact_score_equals_transition_density():
    """With the exact score of a point mass at x0, the probability flow carries q(. | x0, tau0) to
    the prior, so the ODE log-density must equal the analytic log q(v0 | x0, tau0)."""
    from ddsm.sampling.likelihood import ode_log_density

    p = JacobiProcess(3)
    x0 = torch.tensor([[0, 2], [1, 1]])
    g = torch.Generator().manual_seed(5)
    t0 = torch.full((2,), math.sqrt(0.05 / p.T), dtype=torch.float64)
    v0 = p.sample_noisy(x0, t0, generator=g).xt
    logq = p.conditional_logpdf_all(v0, p.native_time(t0))
    exact = logq.gather(-1, x0[..., None]).squeeze(-1).sum(-1)
    # Heun on a geometric grid: second order; 60 steps leave about 0.02 nats here
    ode = ode_log_density(p, Oracle(p, x0), v0, t0, steps=60, divergence="exact")
    assert torch.allclose(ode, exact, atol=0.05), (ode, exact)
    hutch = torch.stack([ode_log_density(p, Oracle(p, x0), v0, t0, steps=60, divergence="hutchinson",
                                         generator=torch.Generator().manual_seed(s)) for s in range(6)]).mean(0)
    assert torch.allclose(hutch, exact, atol=0.5), (hutch, exact)


def test_split_hutchinson_divergence_is_unbiased_and_less_noisy():
    """The local part of the drift (network output held fixed) is differentiated exactly and
    only the network's part is probed: the mean over probes is the exact divergence, and the
    spread is below the plain estimator's."""
    from ddsm.api import build_network
    from ddsm.sampling import likelihood as LK

    torch.manual_seed(0)
    p = JacobiProcess(4)
    net = build_network(p, "conv", 0).eval()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, 4, (2, 10), generator=g)
    u = torch.full((2,), math.sqrt(0.3 / p.T))
    v = p.sample_noisy(x0, u.double(), generator=g).xt
    _, exact = LK._drift_and_divergence(p, net, v, u, None, None)
    probes = [(torch.randint(0, 2, v.shape, generator=g) * 2 - 1).float() for _ in range(200)]
    split = torch.stack([LK._drift_and_divergence(p, net, v, u, None, z)[1] for z in probes])
    orig = JacobiProcess.drift_parts
    try:
        JacobiProcess.drift_parts = lambda self, *a, **k: (orig(self, *a, **k)[0], None)
        plain = torch.stack([LK._drift_and_divergence(p, net, v, u, None, z)[1] for z in probes])
    finally:
        JacobiProcess.drift_parts = orig
    se = split.std(0) / math.sqrt(len(probes))
    assert torch.all((split.mean(0) - exact).abs() <= 4 * se + 1e-6 * exact.abs()), (split.mean(0), exact, se)
    assert torch.all(split.std(0) < plain.std(0)), (split.std(0), plain.std(0))


def test_fresh_probe_per_evaluation_keeps_the_mean_and_cuts_the_spread_of_the_ode_log_density():
    """The ODE path does not depend on Hutchinson's probe, so a fresh probe at every evaluation is
    unbiased given the path (its mean over seeds is the exact-divergence log density) and its
    errors average out along the path: the spread over seeds falls well below that of one probe
    fixed along the trajectory (FFJORD's), which adds the same error at every evaluation."""
    from ddsm.api import build_network
    from ddsm.sampling.likelihood import ode_log_density

    torch.manual_seed(0)
    p = JacobiProcess(4)
    net = build_network(p, "conv", 0).eval()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, 4, (2, 8), generator=g)
    t0 = torch.full((2,), math.sqrt(0.05 / p.T), dtype=torch.float64)
    v0 = p.sample_noisy(x0, t0, generator=g).xt
    exact = ode_log_density(p, net, v0, t0, steps=12, divergence="exact")

    def runs(probe: str) -> torch.Tensor:
        return torch.stack([ode_log_density(p, net, v0, t0, steps=12, probe=probe,
                                            generator=torch.Generator().manual_seed(s)) for s in range(64)])

    # 64 seeds: with 24 the spread estimates (relative error ~15 %) let the ratio of one draw of
    # the random network reach 0.76 where 64 seeds give 0.56 / 0.46
    fresh, fixed = runs("fresh"), runs("fixed")
    se = fresh.std(0) / math.sqrt(len(fresh))
    assert torch.all((fresh.mean(0) - exact).abs() <= 4 * se + 1e-9), (fresh.mean(0), exact, se)
    assert torch.all(fresh.std(0) < 0.7 * fixed.std(0)), (fresh.std(0), fixed.std(0))
    with pytest.raises(ValueError, match="probe"):
        ode_log_density(p, net, v0, t0, steps=2, probe="both")


@pytest.mark.parametrize("K", [3, 5])
def test_training_time_grid_gives_the_exact_law_of_its_times(K):
    """Tabulated grid windows are a cache, not an approximation: for the same on-grid times and seed,
    the noisy sticks and score targets equal those computed from the times themselves, bit for bit."""
    gridded = JacobiScoreProcess(K, n_train_times=64)
    free = JacobiScoreProcess(K, n_train_times=0)
    x0 = torch.randint(0, K, (16, 12), generator=torch.Generator().manual_seed(0))
    t = gridded.sample_time(16, generator=torch.Generator().manual_seed(1))
    assert gridded._grid_rows(t) is not None and len(torch.unique(t)) > 4
    a = gridded.sample_noisy(x0, t, generator=torch.Generator().manual_seed(2))
    b = free.sample_noisy(x0, t, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.xt, b.xt) and torch.equal(a.target, b.target)
    # training times are the grid's cell midpoints, stratified over [sqrt(t_train_min / T), 1]
    grid = gridded._time_grid
    assert len(grid) == 64 and bool((grid[1:] > grid[:-1]).all())
    many = gridded.sample_time(6400, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(gridded._grid_rows(many), minlength=64)
    assert int(counts.min()) >= 50 and int(counts.max()) <= 150
    # off-grid times take the general path
    assert gridded._grid_rows(t + 1e-3) is None
    c = gridded.sample_noisy(x0, t + 1e-3, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(c.target).all()
    with pytest.raises(ValueError):
        JacobiScoreProcess(K, n_train_times=-1)


class _MixtureOracle:
    """Exact score of iid uniform data: d/dv log sum_k q_tau(v | k), through autograd (kept in the
    graph, so the ODE's divergence sees it)."""

    takes_state = True

    def __init__(self, process):
        self.process = process

    def __call__(self, v, t, cond=None):
        tau = self.process.native_time(t)
        with torch.enable_grad():
            vg = v.double() if v.requires_grad else v.detach().double().requires_grad_(True)
            logq = torch.logsumexp(self.process.conditional_logpdf_all(vg, tau), -1).sum()
            (score,) = torch.autograd.grad(logq, vg, create_graph=True)
        return self.process.output_from_score(score, vg, tau)


def test_ode_bound_of_the_exact_mixture_score_is_the_entropy():
    """Not a delta: for iid uniform tokens the exact marginal score makes the ODE bound log2 K bits
    (the likelihood machinery, divergence included, is right beyond single-sequence data)."""
    K = 4
    p = JacobiScoreProcess(K, t_min=0.1, n_train_times=0)
    x0 = torch.randint(0, K, (8, 4), generator=torch.Generator().manual_seed(0))
    bits = p.bits_per_token(_MixtureOracle(p), x0, generator=torch.Generator().manual_seed(1), steps=100,
                            divergence="exact")
    assert abs(bits.mean().item() - 2.0) < 5e-3, bits


def test_ode_bound_can_start_later_and_stays_exact_for_the_exact_score():
    """For iid uniform tokens and the exact marginal score the bound is log2 K at every start time
    (the decoder term and the density cancel exactly), so a later start must print 2 bits too."""
    K = 4
    p = JacobiScoreProcess(K, t_min=0.1, n_train_times=0)
    x0 = torch.randint(0, K, (8, 4), generator=torch.Generator().manual_seed(0))
    bits = p.bits_per_token(_MixtureOracle(p), x0, generator=torch.Generator().manual_seed(1), steps=60,
                            divergence="exact", t_start=1.0)
    assert abs(bits.mean().item() - 2.0) < 5e-3, bits
    # the start is honoured: for a network that is not the exact score, the bound moves with it
    zero = lambda feats, t, cond=None: torch.zeros(*feats.shape[:2], K - 1)  # noqa: E731
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    early = p.bits_per_token(zero, x0, generator=g(), steps=20, divergence="exact")
    late = p.bits_per_token(zero, x0, generator=g(), steps=20, divergence="exact", t_start=1.0)
    assert torch.isfinite(early).all() and torch.isfinite(late).all()
    assert abs(early.mean().item() - late.mean().item()) > 0.05, (early, late)
    for bad in (0.0, -1.0, p.T, 2 * p.T):
        with pytest.raises(ValueError):
            p.bits_per_token(_MixtureOracle(p), x0, steps=2, t_start=bad)
