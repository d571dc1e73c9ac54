"""Declared capabilities of the process contract: the arguments ``step`` names (time dilation),
raw-state models, the classifier-guidance form, the samplers a process has (the masked process's
first-hitting sampler through ``ddsm.api.design``), and the direction of imports."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from ddsm.api import Run, build_network, design
from ddsm.data import DNA
from ddsm.errors import DDSMInputError
from ddsm.guidance import GUIDED_PROCESSES, supports_classifier_guidance
from ddsm.models import RawStateModel, build_model, takes_raw_state
from ddsm.processes import PROCESSES, build_process
from ddsm.processes.masked import CachedDenoiser, MaskedProcess
from ddsm.sampling import FixedPositions, RewardGuidance, guided_sample, sample

K, L = 4, 10
NAMES = sorted(PROCESSES)
SRC = Path(__file__).resolve().parents[2] / "src" / "ddsm"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Uniform(RawStateModel):
    """Equal logits over the K tokens at every position: a raw-state model for the masked process."""

    def __call__(self, xt: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        return torch.zeros(*xt.shape, K, dtype=torch.float64)


# ------------------------------------------------------------------ step names every argument
@pytest.mark.parametrize("name", NAMES)
def test_step_declares_generator_and_dilation(name):
    params = inspect.signature(PROCESSES[name].step).parameters
    for arg in ("generator", "dilation"):
        assert arg in params and params[arg].kind is inspect.Parameter.KEYWORD_ONLY, (name, arg)
    assert params["dilation"].default == 1.0
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize("name", [n for n in NAMES if not PROCESSES[n].supports_dilation])
def test_step_refuses_a_dilation_it_cannot_apply(name):
    p = build_process(name, K)
    B = 3
    xt = p.prior((B, L), generator=gen())
    out = torch.randn(B, L, p.out_channels, generator=gen(1))
    t, s = torch.full((B,), 0.5), torch.full((B,), 0.4)
    p.step(out, xt, t, s, generator=gen(2), dilation=1.0)  # 1 is no dilation: accepted
    with pytest.raises(ValueError, match="does not support time dilation"):
        p.step(out, xt, t, s, generator=gen(2), dilation=2.0)
    with pytest.raises(ValueError, match="does not support time dilation"):
        p.step(out, xt, t, s, generator=gen(2), dilation=torch.full((B,), 2.0))
    with pytest.raises(ValueError, match="does not support time dilation"):
        guided_sample(p, Uniform(), (2, L), RewardGuidance(lambda x: x.sum(-1).double()), steps=2, dilation=2.0)


def test_only_jacobi_declares_dilation():
    assert sorted(n for n in NAMES if PROCESSES[n].supports_dilation) == ["jacobi"]


@pytest.mark.parametrize("name", NAMES)
def test_likelihood_start_time_is_declared(name):
    """``likelihood_t_start`` says exactly whether ``bits_per_token`` takes ``t_start``."""
    for p in [build_process(name, K)] + ([build_process(name, K, output="score")] if name == "jacobi" else []):
        takes = "t_start" in inspect.signature(p.bits_per_token).parameters
        assert p.likelihood_t_start == takes, name


# ------------------------------------------------------------------ raw-state models
def test_raw_state_declaration():
    assert takes_raw_state(Uniform()) and takes_raw_state(CachedDenoiser(MaskedProcess(K), Uniform()))
    assert not takes_raw_state(build_model("mlp", 5, 4, hidden=8))
    assert not takes_raw_state(object())

    class Truthy:  # only an explicit True declares it
        takes_state = 1

    assert not takes_raw_state(Truthy())


# ------------------------------------------------------------------ classifier guidance form
def test_classifier_guidance_form_is_declared_by_the_process():
    assert GUIDED_PROCESSES == tuple(n for n in PROCESSES if PROCESSES[n].classifier_guidance is not None)
    assert set(GUIDED_PROCESSES) == {"jacobi", "dirichlet-fm", "bits"}
    assert supports_classifier_guidance(build_process("jacobi", K, output="score"))
    assert build_process("jacobi", K, output="score").classifier_guidance == "stick-score"
    assert not supports_classifier_guidance(build_process("masked", K))


# ------------------------------------------------------------------ samplers
def test_declared_samplers():
    for name in NAMES:
        p = build_process(name, K)
        assert "ancestral" in p.samplers and p.default_sampler == "ancestral"
        assert p.resolve_sampler(None) == "ancestral"
    assert MaskedProcess.samplers == ("ancestral", "first-hitting")
    assert MaskedProcess(K, sampler="first-hitting").default_sampler == "first-hitting"
    with pytest.raises(ValueError, match="no sampler 'first-hitting'; its samplers: ancestral"):
        build_process("uniform", K).resolve_sampler("first-hitting")


def test_sample_reaches_first_hitting():
    """``sample(..., sampler="first-hitting")`` is ``sample_first_hitting``, draw for draw, and a
    process configured with it runs it by default."""
    p = MaskedProcess(K)
    x0 = torch.randint(0, K, (4, L), generator=gen(3))
    mask = torch.zeros(4, L, dtype=torch.bool)
    mask[:, ::2] = True
    fixed = FixedPositions(x0, mask)
    a = sample(p, Uniform(), (4, L), sampler="first-hitting", fixed=fixed, generator=gen(4))
    b = p.sample_first_hitting(Uniform(), (4, L), fixed=fixed, generator=gen(4))
    assert torch.equal(a, b) and torch.equal(a[mask], x0[mask])
    c = sample(MaskedProcess(K, sampler="first-hitting"), Uniform(), (4, L), fixed=fixed, generator=gen(4))
    assert torch.equal(a, c)
    calls = []
    sample(p, Uniform(), (4, L), sampler="first-hitting", fixed=fixed, generator=gen(4),
           progress=lambda it: calls.extend(it) or calls)
    assert len(calls) == L // 2  # one network call per masked token
    with pytest.raises(ValueError, match="no time grid; drop times"):
        sample(p, Uniform(), (4, L), sampler="first-hitting", times=torch.linspace(1, 0, 5))
    with pytest.raises(ValueError, match="no sampler 'euler'"):
        sample(p, Uniform(), (4, L), sampler="euler")


def _tiny_masked_run() -> Run:
    torch.manual_seed(0)
    p = build_process("masked", K)
    net = build_network(p, "mlp", 0, {"hidden": 8})
    return Run(p, net.eval(), {"alphabet": DNA.to_config(), "seq_len": L, "classes": []})


def test_design_with_the_first_hitting_sampler():
    run = _tiny_masked_run()
    kw = dict(device=torch.device("cpu"), sampler="first-hitting")
    a = design(run, 6, generator=gen(5), **kw).sequences
    b = design(run, 6, generator=gen(5), **kw).sequences
    assert a == b and len(a) == 6
    assert all(s is not None and len(s) == L and set(s) <= set("ACGT") for s in a)
    assert design(run, 6, generator=gen(6), **kw).sequences != a
    # constraints reach the sampler: fixed positions and a forbidden motif
    tok = np.zeros(L, dtype=np.int64)
    mask = np.zeros(L, dtype=bool)
    tok[:3], mask[:3] = [2, 2, 2], True
    fixed = design(run, 6, generator=gen(7), fixed=(tok, mask), forbid=["TT"], **kw).sequences
    assert all(s.startswith("GGG") and "TT" not in s and "AA" not in s for s in fixed)
    # the default is the ancestral grid loop, as before
    assert design(run, 6, generator=gen(5), device=torch.device("cpu")).sequences == \
        design(run, 6, generator=gen(5), device=torch.device("cpu"), sampler="ancestral").sequences


def test_design_refuses_a_sampler_the_process_lacks():
    run = _tiny_masked_run()
    with pytest.raises(DDSMInputError, match="no sampler 'euler'; its samplers: ancestral, first-hitting"):
        design(run, 2, sampler="euler", device=torch.device("cpu"))
    uniform = Run(build_process("uniform", K), run.model, run.config)
    with pytest.raises(DDSMInputError, match="has no sampler 'first-hitting'"):
        design(uniform, 2, sampler="first-hitting", device=torch.device("cpu"))
    with pytest.raises(DDSMInputError, match="reward guidance runs the ancestral sampler"):
        design(run, 2, sampler="first-hitting", reward="gc:0.5", device=torch.device("cpu"))


# ------------------------------------------------------------------ imports point down
def _imports(package: str) -> set[str]:
    """Absolute names of the ddsm modules imported anywhere in ``src/ddsm/<package>``."""
    out = set()
    for path in (SRC / package).rglob("*.py"):
        parts = ["ddsm", *path.relative_to(SRC).with_suffix("").parts]
        pkg = parts[:-1]  # the package a relative import starts from (for __init__: itself)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg[: len(pkg) - node.level + 1] if node.level else []
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("package,forbidden", [
    ("processes", ("ddsm.sampling", "ddsm.guidance", "ddsm.api", "ddsm.cli", "ddsm.train", "ddsm.training")),
    ("special", ("ddsm.processes", "ddsm.sampling", "ddsm.guidance", "ddsm.api", "ddsm.cli")),
])
def test_imports_point_down(package, forbidden):
    bad = sorted(m for m in _imports(package) if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, f"{package}/ imports {bad}"
