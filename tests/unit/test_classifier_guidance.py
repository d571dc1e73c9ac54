"""Classifier guidance for jacobi, dirichlet-fm and bits: the maths of each form, a toy problem
with exact (Bayes-optimal) models for uniform random DNA, w = 0 identity, and bad combinations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ddsm.api import Run, build_network, design, load_run, resolve_classifier
from ddsm.data import DNA
from ddsm.errors import DDSMInputError
from ddsm.guidance import Classifier, ClassifierGuidance, bits_probabilities, grad_log_prob
from ddsm.processes import build_process
from ddsm.sampling import sample
from ddsm.special.stickbreaking import sticks_to_simplex

K, L = 4, 12
A, T = 0, 3


def a_vs_t(x: Tensor) -> Tensor:
    """Analytic classifier of probability rows ``(B, L, 4)``: class 1 ("A-rich") has logit
    sum_l (x_A - x_T), class 0 ("T-rich") its negative."""
    z = (x[..., A] - x[..., T]).sum(-1)
    return torch.stack([-z, z], dim=-1)


CLF = Classifier(a_vs_t, ["T-rich", "A-rich"], alphabet="ACGT", name="a_vs_t")


# ------------------------------------------------------------------ exact models for uniform data
class ExactDirichletFM(nn.Module):
    """p(x1 = e_k | x, alpha) for uniform i.i.d. letters: softmax_k((alpha - 1) log x_k)."""

    def __init__(self, process) -> None:
        super().__init__()
        self.p = process

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        alpha = self.p.alpha(t).float()[:, None, None]
        return (alpha - 1.0) * torch.log(x.clamp_min(1e-30))


class ExactBits(nn.Module):
    """E[c | z_t] for uniform i.i.d. letters (all codes have the same norm)."""

    def __init__(self, process) -> None:
        super().__init__()
        self.p = process

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        p = self.p
        z = x[..., : p.C].double()
        alpha, sigma = p.alpha_sigma(t)
        codes = p.codes(x.device)
        logits = alpha[:, None, None] * (z[..., None, :] * codes).sum(-1) / sigma[:, None, None] ** 2
        return (torch.softmax(logits, -1) @ codes).float()


class ExactJacobi(nn.Module):
    """The exact stick score of uniform i.i.d. letters: the posterior-weighted conditional scores."""

    takes_state = True

    def __init__(self, process) -> None:
        super().__init__()
        self.p = process

    def forward(self, v: Tensor, t: Tensor, cond=None) -> Tensor:
        p = self.p
        tau = p.native_time(t)
        B, n, _ = v.shape
        if p.output == "posterior":  # the exact posterior of uniform letters is the local one
            return p.conditional_logpdf_all(v, tau)
        post = torch.softmax(p.conditional_logpdf_all(v, tau), -1)
        score = sum(post[..., k : k + 1] * p.conditional_score(torch.full((B, n), k, dtype=torch.long), v, tau)
                    for k in range(K))
        return p.output_from_score(score, v, tau).float()


EXACT = {"jacobi": ExactJacobi, "dirichlet-fm": ExactDirichletFM, "bits": ExactBits}


def _exact_run(process_name: str) -> Run:
    """A :class:`Run` whose network is the exact model of uniform random DNA."""
    model = EXACT[process_name](build_process(process_name, K))
    return Run(model.p, model, {"alphabet": DNA.to_config(), "seq_len": L, "classes": []})


# ------------------------------------------------------------------ the form of each process
def test_jacobi_posterior_form_adds_w_grad_at_the_posterior_mean():
    p = build_process("jacobi", K)
    out = torch.randn(2, L, K, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = torch.rand(2, L, K - 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.9 + 0.05
    guided = ClassifierGuidance(p, a_vs_t, 1, 0.5)(out, v, torch.tensor([0.5, 0.5]))
    grad = grad_log_prob(a_vs_t, torch.softmax(out, -1), 1)
    torch.testing.assert_close(guided, out + 0.5 * grad, rtol=1e-6, atol=1e-6)
    assert (guided[..., A] > out[..., A]).all() and (guided[..., T] < out[..., T]).all()


def test_jacobi_score_form_is_the_classifier_score_in_stick_space():
    p = build_process("jacobi", K, output="score")
    g = torch.Generator().manual_seed(0)
    v = torch.rand(3, L, K - 1, generator=g, dtype=torch.float64) * 0.9 + 0.05
    t = torch.tensor([0.3, 0.6, 0.9])
    out = torch.randn(3, L, K - 1, generator=g)
    w = 1.7
    guided = ClassifierGuidance(p, a_vs_t, 1, w)(out, v, t)
    tau = p.native_time(t)
    shift = p.score_from_output(guided, v, tau) - p.score_from_output(out, v, tau)
    vg = v.clone().requires_grad_(True)
    logp = torch.log_softmax(a_vs_t(sticks_to_simplex(vg)), -1)[:, 1].sum()
    (direct,) = torch.autograd.grad(logp, vg)  # d/dv log p(y | x(v)) through stick-breaking
    torch.testing.assert_close(shift, w * direct, rtol=1e-4, atol=1e-5)


def test_dirichlet_fm_form_adds_w_grad_at_the_posterior_mean():
    p = build_process("dirichlet-fm", K)
    out = torch.randn(2, L, K, generator=torch.Generator().manual_seed(1))
    x = torch.softmax(torch.randn(2, L, K, dtype=torch.float64), -1)
    guided = ClassifierGuidance(p, a_vs_t, 1, 0.5)(out, x, torch.tensor([0.5, 0.5]))
    grad = grad_log_prob(a_vs_t, torch.softmax(out.double(), -1), 1)
    torch.testing.assert_close(guided.double(), out.double() + 0.5 * grad, rtol=1e-6, atol=1e-6)
    assert (guided[..., A] > out[..., A]).all() and (guided[..., T] < out[..., T]).all()


@pytest.mark.parametrize("encoding", ["binary", "onehot"])
def test_bits_form_is_the_tilted_posterior_mean(encoding):
    p = build_process("bits", K, encoding=encoding)
    codes = p.codes()
    probs = bits_probabilities(p, codes[None, None])  # exact codes decode to their letter
    torch.testing.assert_close(probs[0, 0], torch.eye(K, dtype=torch.float64), atol=1e-5, rtol=0)
    out = torch.rand(2, L, p.C, generator=torch.Generator().manual_seed(2)) * 2.4 - 1.2
    guided = ClassifierGuidance(p, a_vs_t, 1, 2.0)(out, torch.zeros(2, L, p.in_channels), torch.tensor([0.5, 0.5]))
    x0 = out.double().clamp(-1, 1)
    g = grad_log_prob(lambda xh: a_vs_t(bits_probabilities(p, xh)), x0, 1)
    torch.testing.assert_close(guided.double(), x0 + 2.0 * (1 - x0**2) * g, rtol=1e-5, atol=1e-6)
    decided = x0.abs() >= 1
    torch.testing.assert_close(guided.double()[decided], x0[decided])  # a decided bit is left alone


# ------------------------------------------------------------------ the toy problem
def target_fraction(tokens: Tensor) -> float:
    """Fraction classified 'A-rich' by the analytic classifier (more A than T)."""
    return float(((tokens == A).sum(-1) > (tokens == T).sum(-1)).double().mean())


@pytest.mark.parametrize("process_name", ["jacobi", "jacobi-score", "dirichlet-fm", "bits"])
def test_guidance_raises_the_target_class_fraction(process_name):
    p = build_process("jacobi", K, output="score") if process_name == "jacobi-score" else build_process(process_name, K)
    process_name = p.name
    model = EXACT[process_name](p)
    frac = {}
    for w in (0.0, 1.0):
        hook = ClassifierGuidance(p, a_vs_t, 1, w) if w else None
        toks = sample(p, model, (96, L), steps=30, output_hook=hook, generator=torch.Generator().manual_seed(0))
        frac[w] = target_fraction(toks)
    print(f"\n{process_name}: fraction 'A-rich' unguided {frac[0.0]:.3f}, classifier guidance w=1 {frac[1.0]:.3f}")
    assert frac[0.0] < 0.6  # exact model of uniform DNA: ties and T-rich are as common as A-rich
    assert frac[1.0] > frac[0.0] + 0.25


@pytest.mark.parametrize("process_name", ["jacobi", "dirichlet-fm", "bits"])
def test_zero_weight_reproduces_unguided_samples_byte_identically(process_name):
    run = _exact_run(process_name)
    kw = dict(steps=8, device=torch.device("cpu"))
    plain = design(run, 8, generator=torch.Generator().manual_seed(3), **kw).sequences
    zero = design(run, 8, classifier_guidance=0.0, classifier=CLF, class_name="A-rich",
                  generator=torch.Generator().manual_seed(3), **kw).sequences
    guided = design(run, 8, classifier_guidance=2.0, classifier=CLF, class_name="A-rich",
                    generator=torch.Generator().manual_seed(3), **kw).sequences
    assert zero == plain
    assert guided != plain


def test_design_steers_an_exact_model_through_the_api():
    run = _exact_run("dirichlet-fm")
    kw = dict(steps=20, device=torch.device("cpu"), classifier=CLF)
    seqs = {w: design(run, 64, classifier_guidance=w, class_name="T-rich", generator=torch.Generator().manual_seed(0),
                      **kw).sequences for w in (0.0, 1.0)}
    t_rich = {w: np.mean([s.count("T") > s.count("A") for s in v]) for w, v in seqs.items()}
    assert t_rich[1.0] > t_rich[0.0] + 0.25


# ------------------------------------------------------------------ bad combinations
def _tiny_run(process_name: str, classes=()) -> Run:
    p = build_process(process_name, K)
    net = build_network(p, "transformer" if p.causal else "mlp", len(classes),
                        {"d_model": 16, "n_layers": 1, "n_heads": 2} if p.causal else {"hidden": 8})
    return Run(p, net.eval(), {"alphabet": DNA.to_config(), "seq_len": L, "classes": list(classes)})


@pytest.mark.parametrize("process_name", ["masked", "uniform", "discrete-fm", "autoregressive"])
def test_discrete_processes_are_refused(process_name):
    with pytest.raises(DDSMInputError, match="needs a simplex or bits process .* uses"):
        design(_tiny_run(process_name), 2, steps=2, classifier_guidance=1.0, classifier=CLF, class_name="A-rich",
               device=torch.device("cpu"))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"classifier_guidance": 1.0, "classifier": CLF}, "needs --class"),
    ({"classifier_guidance": 1.0, "classifier": CLF, "class_name": "G-rich"}, "not one of the classes of a_vs_t"),
    ({"classifier_guidance": -1.0, "classifier": CLF, "class_name": "A-rich"}, "finite number >= 0"),
    ({"classifier_guidance": float("nan"), "classifier": CLF, "class_name": "A-rich"}, "finite number >= 0"),
    ({"classifier_guidance": 1.0, "class_name": "A-rich"}, "needs --classifier DIR"),
    ({"classifier_guidance": 1.0, "classifier": Classifier(a_vs_t, ["x", "A-rich"], alphabet="TGCA"),
      "class_name": "A-rich"}, "reads letters TGCA"),
])
def test_bad_classifier_guidance_requests(kwargs, pattern):
    with pytest.raises(DDSMInputError, match=pattern):
        design(_tiny_run("dirichlet-fm"), 2, steps=2, device=torch.device("cpu"), **kwargs)


def test_conditional_model_class_must_exist_in_the_model_too():
    run = _tiny_run("bits", classes=["A-rich", "T-rich"])
    res = design(run, 2, steps=3, classifier_guidance=1.0, classifier=CLF, class_name="A-rich", guidance=1.0,
                 device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))  # composes with CFG
    assert all(s is not None for s in res.sequences)
    with pytest.raises(DDSMInputError, match="unknown class"):
        design(run, 2, steps=2, classifier_guidance=1.0, classifier=Classifier(a_vs_t, ["x", "y"]),
               class_name="y", device=torch.device("cpu"))


# ------------------------------------------------------------------ the bundled oracles
def test_oracle_soft_logits_match_its_logits_on_one_hot_rows():
    from ddsm.metrics.oracle import load_oracle

    oracle = load_oracle("dhs4")
    rng = np.random.default_rng(0)
    for n in (200, 180, 220):  # exact, right-padded, centre-cropped
        seqs = ["".join(rng.choice(list("ACGT"), size=n)) for _ in range(3)]
        ids = torch.tensor([["ACGT".index(c) for c in s] for s in seqs])
        soft = oracle.soft_logits(torch.nn.functional.one_hot(ids, 4).float())
        np.testing.assert_allclose(soft.detach().numpy(), oracle.logits(seqs), rtol=1e-4, atol=1e-4)


def test_default_classifier_is_the_bundled_oracle_of_the_same_data():
    run = load_run("dhs4")
    clf = resolve_classifier(run)
    assert clf.name == "dhs4" and clf.classes == run.classes
    with pytest.raises(DDSMInputError, match="needs --classifier DIR"):
        resolve_classifier(_tiny_run("jacobi"))


# ------------------------------------------------------------------ guidance interval
class _Counting(nn.Module):
    """Records the batch size of every call; output depends on the class so CFG is visible."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        self.calls.append(x.shape[0])
        c = torch.zeros(x.shape[0]) if cond is None else cond.float()
        return x + c[:, None, None]


def test_cfg_interval_guides_inside_and_calls_once_outside():
    from ddsm.guidance import ClassifierFreeGuidance

    net = _Counting()
    cfg = ClassifierFreeGuidance(net, 2.0, null_class=3, interval=(0.2, 0.6))
    x, cond = torch.zeros(2, 5, 4), torch.tensor([1, 1])
    inside = cfg(x, torch.full((2,), 0.4), cond)
    assert net.calls == [4] and torch.allclose(inside, torch.full_like(x, 1 + 2.0 * (1 - 3)))
    outside = cfg(x, torch.full((2,), 0.9), cond)  # the plain conditional output, one call on 2 rows
    assert net.calls == [4, 2] and torch.equal(outside, net(x, torch.full((2,), 0.9), cond))
    for bad in ((0.6, 0.2), (-0.1, 0.5), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="interval"):
            ClassifierFreeGuidance(net, 1.0, null_class=3, interval=bad)


def test_classifier_guidance_interval_leaves_outside_steps_untouched():
    p = build_process("jacobi", K)
    hook = ClassifierGuidance(p, a_vs_t, 1, 2.0, interval=(0.0, 0.5))
    out = torch.randn(3, L, K, dtype=torch.float64)
    v = p.prior((3, L), generator=torch.Generator().manual_seed(0))
    assert torch.equal(hook(out, v, torch.full((3,), 0.8)), out)
    assert not torch.allclose(hook(out, v, torch.full((3,), 0.3)), out)


def test_design_with_an_interval_outside_the_run_is_unguided_byte_identically():
    run = _exact_run("jacobi")
    kw = dict(steps=8, device=torch.device("cpu"), classifier=CLF, class_name="A-rich")
    plain = design(run, 8, generator=torch.Generator().manual_seed(3), steps=8, device=torch.device("cpu")).sequences
    never = design(run, 8, classifier_guidance=2.0, guidance_interval=(1.5, 2.0),
                   generator=torch.Generator().manual_seed(3), **kw).sequences
    late = design(run, 8, classifier_guidance=2.0, guidance_interval=(0.0, 0.5),
                  generator=torch.Generator().manual_seed(3), **kw).sequences
    assert never == plain and late != plain
    with pytest.raises(DDSMInputError, match="interval"):
        design(run, 2, classifier_guidance=1.0, guidance_interval=(0.5, 0.1), **kw)
