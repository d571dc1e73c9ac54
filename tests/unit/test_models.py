"""Contract tests for the denoising backbones, parametrised over the registry."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
import torch
from torch import Tensor

from ddsm.models import MODELS, KVCache, TransformerDenoiser, build_model

# Small architectures keep the suite fast; every registered model must appear here.
SMALL: dict[str, dict[str, Any]] = {
    "conv": dict(hidden=32, n_blocks=5),
    "transformer": dict(d_model=32, n_layers=2, n_heads=4, max_len=64),
    "mlp": dict(hidden=16),
}
# The causal transformer is a distinct configuration with its own contract.
VARIANTS = [(name, SMALL[name]) for name in MODELS] + [
    ("transformer", dict(SMALL["transformer"], causal=True)),
    ("transformer", dict(SMALL["transformer"], attn_bias="alibi")),
]
IDS = ["conv", "transformer", "mlp", "transformer-causal", "transformer-alibi"]


def _make(name: str, kwargs: dict[str, Any], c_in: int = 4, c_out: int = 5, n_classes: int = 3):
    torch.manual_seed(0)
    return build_model(name, c_in, c_out, n_classes, **kwargs).eval()


def _inputs(B: int = 2, L: int = 7, c_in: int = 4, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, L, c_in, generator=g), torch.rand(B, generator=g)


def test_registry_is_covered_and_described():
    assert set(SMALL) == set(MODELS)
    for cls in MODELS.values():
        assert isinstance(cls.description, str) and cls.description


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="conv"):
        build_model("nope", 4, 4)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
@pytest.mark.parametrize("B,L,c_in,c_out", [(1, 1, 4, 4), (2, 3, 4, 5), (3, 17, 1, 2), (2, 40, 9, 9)])
def test_output_shape(name, kwargs, B, L, c_in, c_out):
    model = _make(name, kwargs, c_in, c_out, n_classes=0)
    x, t = _inputs(B, L, c_in)
    assert model(x, t).shape == (B, L, c_out)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_cond_none_is_null_class(name, kwargs):
    model = _make(name, kwargs)
    x, t = _inputs()
    null = torch.full((2,), 3, dtype=torch.long)
    out = model(x, t, torch.tensor([0, 2]))
    assert out.shape == (2, 7, 5) and torch.isfinite(out).all()
    torch.testing.assert_close(model(x, t), model(x, t, null))


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_gradients_reach_every_parameter(name, kwargs):
    model = _make(name, kwargs).train()
    x, t = _inputs()
    model(x, t, torch.tensor([1, 3])).square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_config_round_trip(name, kwargs):
    model = _make(name, kwargs)
    config = json.loads(json.dumps(model.config()))
    assert {"in_channels", "out_channels", "n_classes"} <= set(config)
    torch.manual_seed(123)  # a different init, overwritten by the state dict
    rebuilt = build_model(name, **config).eval()
    assert rebuilt.config() == config
    rebuilt.load_state_dict(model.state_dict())
    x, t = _inputs()
    cond = torch.tensor([0, 3])
    assert torch.equal(model(x, t, cond), rebuilt(x, t, cond))


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_fourier_features_are_saved_and_seed_independent(name, kwargs):
    keys = [k for k in _make(name, kwargs).state_dict() if k.endswith("fourier.freqs")]
    if kwargs.get("causal"):
        assert keys == []  # a causal model ignores time
        return
    assert len(keys) == 1
    torch.manual_seed(0)
    a = build_model(name, 4, 5, **kwargs).state_dict()[keys[0]]
    torch.manual_seed(99)
    b = build_model(name, 4, 5, **kwargs).state_dict()[keys[0]]
    assert torch.equal(a, b)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_construction_is_deterministic(name, kwargs):
    a, b = _make(name, kwargs).state_dict(), _make(name, kwargs).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_time_conditioning_is_alive(name, kwargs):
    model = _make(name, kwargs)
    x, t = _inputs()
    changed = not torch.allclose(model(x, t), model(x, 1 - t))
    # A left-to-right model accepts t but ignores it by design.
    assert changed != bool(kwargs.get("causal"))


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_class_conditioning_is_alive(name, kwargs):
    model = _make(name, kwargs)
    x, t = _inputs()
    a, b = model(x, t, torch.tensor([0, 1])), model(x, t, torch.tensor([2, 3]))
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_follows_input_dtype(name, kwargs):
    model = _make(name, kwargs).double()
    x, t = _inputs()
    assert model(x.double(), t.double(), torch.tensor([0, 3])).dtype == torch.float64


def test_conv_handles_lengths_shorter_than_receptive_field():
    model = _make("conv", dict(hidden=16, n_blocks=5, kernel_size=9, dilations=(1, 64)))
    for L in (1, 2, 5):
        x, t = _inputs(L=L)
        assert model(x, t).shape == (2, L, 5)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # the Conv1d reference, even kernel
@pytest.mark.parametrize("kernel_size,dilation", [(9, 1), (9, 4), (4, 3), (1, 1)])
def test_conv_block_channels_last_conv_equals_conv1d(kernel_size, dilation):
    """The block's height-1 conv2d (a layout choice for speed) is Conv1d's 'same' conv, values and
    gradients, odd and even kernels included."""
    from ddsm.models.conv import _ConvBlock

    torch.manual_seed(0)
    block = _ConvBlock(8, kernel_size, dilation, 0.0).double()
    h = torch.randn(3, 11, 8, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 8, dtype=torch.float64)

    def reference(h: Tensor) -> Tensor:
        y = block.conv(h.transpose(1, 2)).transpose(1, 2) + block.dense(c)[:, None, :]
        return h + torch.nn.functional.gelu(block.norm(y))

    got, want = block(h, c), reference(h)
    assert torch.allclose(got, want, atol=1e-12)
    g_got = torch.autograd.grad(got.square().sum(), (h, block.conv.weight))
    g_want = torch.autograd.grad(want.square().sum(), (h, block.conv.weight))
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-10)


def test_transformer_rejects_too_long_input():
    model = _make("transformer", dict(SMALL["transformer"], max_len=8))
    x, t = _inputs(L=9)
    with pytest.raises(ValueError, match="max_len"):
        model(x, t)


def _dependence(model, x: Tensor, t: Tensor) -> Tensor:
    """``(L, L)`` bool: entry (i, j) says output i changes when input j is perturbed."""
    base = model(x, t)
    L = x.shape[1]
    dep = torch.zeros(L, L, dtype=torch.bool)
    for j in range(L):
        x2 = x.clone()
        x2[:, j] += 1.0
        dep[:, j] = (model(x2, t) - base).abs().amax(dim=(0, 2)) > 1e-6
    return dep


def test_causal_transformer_ignores_the_future():
    model = _make("transformer", dict(SMALL["transformer"], causal=True))
    dep = _dependence(model, *_inputs(L=6))
    assert torch.equal(dep, torch.ones(6, 6, dtype=torch.bool).tril())


def test_bidirectional_transformer_sees_everything():
    dep = _dependence(_make("transformer", SMALL["transformer"]), *_inputs(L=6))
    assert dep.all()


class _DiagonalOnly(TransformerDenoiser):
    """Blocks attention to every other position through the bias hook."""

    def attention_bias(self, L: int, device: torch.device) -> Optional[Tensor]:
        return torch.full((L, L), -1e9, device=device).fill_diagonal_(0.0)


class _PerHeadNext(TransformerDenoiser):
    """Per-head ``(H, L, L)`` bias: head 0 sees itself and the next position, others only self."""

    def attention_bias(self, L: int, device: torch.device) -> Optional[Tensor]:
        i = torch.arange(L, device=device)
        bias = torch.full((self.n_heads, L, L), -1e9, device=device)
        bias[:, i, i] = 0.0
        bias[0, i[:-1], i[1:]] = 0.0
        return bias


@pytest.mark.parametrize("causal", [False, True])
def test_attention_bias_hook_is_applied(causal):
    torch.manual_seed(0)
    model = _DiagonalOnly(4, 5, 3, **dict(SMALL["transformer"], causal=causal)).eval()
    dep = _dependence(model, *_inputs(L=6))
    assert torch.equal(dep, torch.eye(6, dtype=torch.bool))


def test_per_head_bias_combines_with_causal_mask():
    torch.manual_seed(0)
    kwargs = dict(SMALL["transformer"], n_layers=1)
    bidir = _dependence(_PerHeadNext(4, 5, **kwargs).eval(), *_inputs(L=5))
    assert torch.equal(bidir, torch.ones(5, 5, dtype=torch.bool).triu().tril(1))
    causal = _dependence(_PerHeadNext(4, 5, **kwargs, causal=True).eval(), *_inputs(L=5))
    assert torch.equal(causal, torch.eye(5, dtype=torch.bool))


@pytest.mark.parametrize("attn_bias", [None, "alibi"])
@pytest.mark.parametrize("prefill", [0, 3])
def test_kv_cache_matches_full_causal_forward(attn_bias, prefill):
    model = _make("transformer", dict(SMALL["transformer"], causal=True, attn_bias=attn_bias))
    x, t = _inputs(B=3, L=9)
    cond = torch.tensor([0, 2, 3])
    full = model(x, t, cond)
    outs, cache, start = [], None, 0
    if prefill:
        out, cache = model.forward_step(x[:, :prefill], 0, cache, cond)
        outs.append(out)
        start = prefill
    for pos in range(start, x.shape[1]):
        out, cache = model.forward_step(x[:, pos : pos + 1], pos, cache, cond)
        outs.append(out)
    assert isinstance(cache, KVCache) and cache.length == x.shape[1]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)


def test_forward_step_rejects_misuse():
    x, _ = _inputs(L=2)
    with pytest.raises(RuntimeError):
        _make("transformer", SMALL["transformer"]).forward_step(x[:, :1], 0)
    causal = _make("transformer", dict(SMALL["transformer"], causal=True))
    _, cache = causal.forward_step(x[:, :1], 0)
    with pytest.raises(ValueError, match="pos"):
        causal.forward_step(x[:, 1:2], 5, cache)


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=IDS)
def test_a_drifted_output_constant_survives_bf16_autocast(name, kwargs):
    """Logits are defined up to a constant, which training does not hold; once it drifts to
    hundreds, a bf16 head would round the differences between outputs to steps of 1-2. The head
    runs in float32, so under autocast the outputs keep their differences to bf16-body accuracy."""
    model = _make(name, kwargs)
    x, t = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        base = model(x, t)
        with torch.no_grad():
            model.out_proj.bias += 400.0
        drifted = model(x, t)
    assert drifted.dtype == torch.float32
    diff = (drifted - base) - 400.0
    assert diff.abs().max() < 1e-3, float(diff.abs().max())
