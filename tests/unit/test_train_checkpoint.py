"""Training loop, EMA, seeding and checkpoint folders.

Uses a tiny local model and a stub process (duck-typed: ``loss``, ``config``, ``name``, channels)
so these tests do not depend on the registered processes or backbones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddsm import checkpoint as ckpt
from ddsm.ema import EMA
from ddsm.errors import DDSMInputError
from ddsm.seeding import get_rng_state, make_generator, seed_everything, set_rng_state
from ddsm.training import Batch, EpochSampler, TrainConfig, evaluate, lr_at, train

K, L = 4, 8


# ------------------------------------------------------------------------------------ helpers
@dataclass
class _LossOutput:
    loss: Tensor
    terms: Tensor


class ToyProcess:
    """Uniform-noise corruption: each token is kept with probability 1 - t, else resampled."""

    name = "toy"

    def __init__(self, K: int = K, nan_at_call: Optional[int] = None) -> None:
        self.K = K
        self.nan_at_call = nan_at_call
        self.calls = 0

    @property
    def in_channels(self) -> int:
        return self.K + 1

    @property
    def out_channels(self) -> int:
        return self.K

    def config(self) -> dict[str, Any]:
        return {"K": self.K}

    def loss(self, model, x0, *, cond=None, pad_mask=None, generator=None):
        self.calls += 1
        B, Lx = x0.shape
        t = torch.rand(B, generator=generator, device=x0.device)
        keep = torch.rand(B, Lx, generator=generator, device=x0.device) > t[:, None]
        noise = torch.randint(0, self.K, (B, Lx), generator=generator, device=x0.device)
        xt = torch.where(keep, x0, noise)
        feats = torch.cat([F.one_hot(xt, self.K).float(), t[:, None, None].expand(B, Lx, 1)], -1)
        logits = model(feats, t, cond)
        terms = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
        if pad_mask is not None:
            m = pad_mask.float()
            loss = (terms * m).sum() / m.sum().clamp_min(1.0)
        else:
            loss = terms.mean()
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            loss = loss * float("nan")
        return _LossOutput(loss, terms)


class TinyModel(nn.Module):
    """Per-position MLP with label embedding, dropout (draws from the global RNG) and an int buffer."""

    def __init__(self, in_channels: int, out_channels: int, n_classes: int = 0, hidden: int = 16,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.n_classes = in_channels, out_channels, n_classes
        self.hidden, self.dropout = hidden, dropout
        self.inp = nn.Linear(in_channels, hidden)
        self.label = nn.Embedding(n_classes + 1, hidden) if n_classes else None  # id n_classes: null
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, out_channels)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        h = torch.relu(self.inp(x))
        if cond is not None and self.label is not None:
            h = h + self.label(cond)[:, None, :]
        if self.training:
            self.calls += 1
        return self.out(self.drop(h))

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "n_classes": self.n_classes, "hidden": self.hidden, "dropout": self.dropout}


def toy_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Class c in {0, 1}; tokens drawn with probability 0.7 on token c, 0.1 elsewhere."""
    g = make_generator(seed)
    cond = torch.randint(0, 2, (n,), generator=g)
    probs = torch.full((n, K), 0.1)
    probs[torch.arange(n), cond] = 0.7
    x = torch.multinomial(probs, L, replacement=True, generator=g)
    return x, cond


def make_model(seed: int = 0, **kw: Any) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(K + 1, K, n_classes=2, **kw)


def small_config(**kw: Any) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=5e-3, warmup_steps=2, grad_clip=1.0, ema_decay=0.9,
                eval_every=3, eval_batches=2, checkpoint_every=3, log_every=2, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def no_tmp(folder: Path) -> bool:
    return not list(folder.rglob("*.tmp"))


# ------------------------------------------------------------------------------------ config, seeding
def test_train_config_round_trip_and_unknown_keys() -> None:
    cfg = TrainConfig(steps=10, schedule="cosine")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="bogus.*zzz|bogus, zzz"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1, "zzz": 2})
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_lr_schedule() -> None:
    cfg = TrainConfig(steps=10, lr=1.0, warmup_steps=4, schedule="cosine")
    assert [lr_at(s, cfg) for s in (1, 2, 4)] == [0.25, 0.5, 1.0]
    assert lr_at(10, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(7, cfg) == pytest.approx(0.5)
    const = TrainConfig(steps=10, lr=1.0, warmup_steps=0)
    assert lr_at(1, const) == lr_at(10, const) == 1.0


def test_cooldown_schedule_is_constant_then_linear_to_zero() -> None:
    # warm-up 2, stable, cooldown over the last 4 of 10 steps (7..10): lr x 4/4, 3/4, 2/4, 1/4
    cfg = TrainConfig(steps=10, lr=2.0, warmup_steps=2, cooldown_steps=4)
    assert [lr_at(s, cfg) for s in range(1, 11)] == pytest.approx(
        [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.5, 1.0, 0.5])
    # extending the run moves the cooldown with it: step 7 is stable again
    longer = TrainConfig(steps=20, lr=2.0, warmup_steps=2, cooldown_steps=4)
    assert lr_at(7, longer) == 2.0 and lr_at(20, longer) == pytest.approx(0.5)
    overlap = TrainConfig(steps=4, lr=1.0, warmup_steps=4, cooldown_steps=2)  # warm-up x cooldown
    assert [lr_at(s, overlap) for s in range(1, 5)] == pytest.approx([0.25, 0.5, 0.75, 0.5])
    with pytest.raises(ValueError, match="cooldown"):
        TrainConfig(schedule="cosine", cooldown_steps=5)
    with pytest.raises(ValueError, match="cooldown"):
        TrainConfig(cooldown_steps=-1)


def test_seeding_and_rng_state() -> None:
    g1 = seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g1).item())
    state = get_rng_state()
    json.dumps({k: v for k, v in state.items() if k in ("python", "numpy")})  # JSON-friendly
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    g2 = seed_everything(3)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g2).item())
    set_rng_state(state)
    assert b == (random.random(), np.random.rand(), torch.rand(1).item())
    assert torch.equal(torch.rand(3, generator=make_generator(5)), torch.rand(3, generator=make_generator(5)))


def test_epoch_sampler_covers_each_epoch_and_resumes() -> None:
    s = EpochSampler(10, 4, seed=1)
    seen = torch.cat([s.next() for _ in range(5)])  # 20 indices = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    state = s.state_dict()
    nxt = s.next()
    again = EpochSampler(10, 4, seed=1, epoch=state["epoch"], position=state["position"])
    assert torch.equal(again.next(), nxt)


# ------------------------------------------------------------------------------------ EMA
def test_ema_math_with_warmup_and_buffers() -> None:
    model = nn.Linear(1, 1, bias=False)
    model.register_buffer("count", torch.zeros((), dtype=torch.long))
    model.register_buffer("stat", torch.zeros(()))
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    expected = 0.0
    for n in range(12):
        with torch.no_grad():
            model.weight.fill_(float(n + 1))
            model.count += 1
            model.stat.fill_(10.0 * (n + 1))
        d = min(0.5, (1 + n) / (10 + n))
        assert ema.effective_decay() == pytest.approx(d)
        ema.update(model)
        expected = d * expected + (1 - d) * (n + 1)
        assert ema.shadow["weight"].item() == pytest.approx(expected, rel=1e-6)
        # buffers are copied, not averaged
        assert ema.shadow["count"].item() == n + 1
        assert ema.shadow["stat"].item() == 10.0 * (n + 1)
    assert ema.num_updates == 12

    raw = model.weight.detach().clone()
    with ema.swapped(model):
        assert model.weight.item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(model.weight, raw)
    with pytest.raises(RuntimeError), ema.swapped(model):
        raise RuntimeError("body fails")
    assert torch.equal(model.weight, raw)

    other = EMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 12 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    ema.copy_to(model)
    assert model.weight.item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------ training
def test_loss_decreases_on_toy_problem() -> None:
    x, c = toy_data(256, seed=0)
    xv, cv = toy_data(64, seed=1)
    model = make_model(0)
    process = ToyProcess()
    before = evaluate(process, model, Batch(xv, cv), batch_size=32, max_batches=2, generator=make_generator(0))
    steps_seen: list[int] = []
    result = train(process, model, Batch(x, c), valid=Batch(xv, cv),
                   config=TrainConfig(steps=150, batch_size=32, lr=1e-2, warmup_steps=10, ema_decay=0.9,
                                      eval_every=50, eval_batches=2, log_every=25, seed=0),
                   on_step=lambda s, info: steps_seen.append(s))
    hist = result["history"]
    assert steps_seen == list(range(1, 151))
    assert [h["step"] for h in hist] == [25, 50, 75, 100, 125, 150]
    assert set(hist[0]) == {"step", "train_loss", "valid_loss", "lr", "seconds"}
    assert hist[0]["valid_loss"] is None and hist[1]["valid_loss"] is not None
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.1
    assert result["final_valid_loss"] < before - 0.2
    assert result["final_valid_loss"] < math.log(K)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    x, c = toy_data(64, seed=0)
    model = make_model(0)
    process = ToyProcess()
    out = tmp_path / "run"
    train(process, model, Batch(x, c), config=small_config(), out_dir=out,
          run_meta={"alphabet": "ACGT", "seq_len": L, "classes": ["a", "b"], "data_hash": "abc"},
          model_name="tiny")
    cfg = ckpt.load_config(out)
    assert cfg["format_version"] == 1 and cfg["step"] == 6
    assert cfg["process"] == {"name": "toy", "options": {"K": K}}
    assert cfg["model"] == {"name": "tiny", "options": model.config()}
    assert cfg["train"] == small_config().to_dict()
    assert cfg["alphabet"] == "ACGT" and cfg["classes"] == ["a", "b"] and "created" in cfg
    assert {p.name for p in out.iterdir()} == {
        "config.json", "model.safetensors", "model_raw.safetensors", "optimizer.safetensors", "train_state.json"}
    opt_keys = set(__import__("safetensors.torch").torch.load_file(str(out / "optimizer.safetensors")))
    assert "state.0.exp_avg" in opt_keys and "train_state.rng.global.torch_cpu" in opt_keys
    assert no_tmp(out)

    # raw weights: identical to the trained model
    raw = TinyModel(**cfg["model"]["options"])
    ckpt.load_model_weights(out, raw, raw=True)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), raw.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)

    # EMA weights: differ from raw, give identical outputs to a second load
    ema_a, ema_b = TinyModel(**cfg["model"]["options"]), TinyModel(**cfg["model"]["options"])
    ckpt.load_model_weights(out, ema_a)
    ckpt.load_model_weights(out, ema_b)
    assert not torch.equal(ema_a.out.weight, raw.out.weight)
    ema_a.eval(), ema_b.eval()
    feats, t = torch.randn(3, L, K + 1), torch.rand(3)
    assert torch.equal(ema_a(feats, t, c[:3]), ema_b(feats, t, c[:3]))

    # weights-only save (export): training files go away, config stays loadable
    export = tmp_path / "export"
    ckpt.save_checkpoint(export, model=ema_a, model_name="tiny", process=process, config_extra={"seed": 1})
    assert {p.name for p in export.iterdir()} == {"config.json", "model.safetensors"}
    again = TinyModel(**cfg["model"]["options"]).eval()
    ckpt.load_model_weights(export, again)
    assert torch.equal(again(feats, t, c[:3]), ema_a(feats, t, c[:3]))
    ckpt.save_checkpoint(out, model=ema_a, model_name="tiny", process=process)
    assert not ckpt.has_training_state(out) and not (out / "optimizer.safetensors").exists()


class _Crash(Exception):
    pass


def test_resume_is_exact(tmp_path: Path) -> None:
    x, c = toy_data(20, seed=0)  # 20 examples, batch 8: batches straddle epochs
    xv, cv = toy_data(16, seed=1)
    cfg = small_config(schedule="cosine")
    kw = dict(valid=Batch(xv, cv), config=cfg, model_name="tiny")

    seed_everything(0)
    straight = make_model(0)
    res_a = train(ToyProcess(), straight, Batch(x, c), out_dir=tmp_path / "a", **kw)

    def crash(step: int, info: dict) -> None:
        if step == 4:
            raise _Crash

    seed_everything(0)
    with pytest.raises(_Crash):
        train(ToyProcess(), make_model(0), Batch(x, c), out_dir=tmp_path / "b", on_step=crash, **kw)
    assert ckpt.load_config(tmp_path / "b")["step"] == 3

    seed_everything(123)  # a different global RNG state: resume must restore the saved one
    resumed = make_model(1)  # a different init: resume must overwrite it
    res_b = train(ToyProcess(), resumed, Batch(x, c), out_dir=tmp_path / "b", resume=True, **kw)

    for (n1, p1), (n2, p2) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    ema_a, ema_b = make_model(2), make_model(3)
    ckpt.load_model_weights(tmp_path / "a", ema_a)
    ckpt.load_model_weights(tmp_path / "b", ema_b)
    for p1, p2 in zip(ema_a.state_dict().values(), ema_b.state_dict().values()):
        assert torch.equal(p1, p2)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(res_a["history"]) == strip(res_b["history"])
    assert res_b["step"] == 6
    assert no_tmp(tmp_path)

    # resuming with a different batch size would change the data order
    with pytest.raises(DDSMInputError, match="batch_size"):
        train(ToyProcess(), make_model(0), Batch(x, c), out_dir=tmp_path / "b", resume=True,
              **{**kw, "config": small_config(schedule="cosine", batch_size=4)})


def test_non_finite_loss_names_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    x, c = toy_data(32, seed=0)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"step 5\b.*step 4"):
        train(ToyProcess(nan_at_call=5), make_model(0), Batch(x, c), out_dir=out, model_name="tiny",
              config=small_config(steps=8, checkpoint_every=2))
    cfg = ckpt.load_config(out)
    assert cfg["step"] == 4
    model = TinyModel(**cfg["model"]["options"])
    ckpt.load_model_weights(out, model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters())
    state = ckpt.load_training_state(out, model, EMA(model, 0.9), opt)
    assert state["step"] == 4
    assert no_tmp(out)


# ------------------------------------------------------------------------------------ load errors
@pytest.fixture
def saved(tmp_path: Path) -> Path:
    out = tmp_path / "ck"
    model = make_model(0)
    ckpt.save_checkpoint(out, model=model, model_name="tiny", process=ToyProcess(), step=1)
    return out


def test_error_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DDSMInputError, match="does not exist"):
        ckpt.load_config(tmp_path / "nope")


def test_error_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DDSMInputError, match=r"is not a ddsm checkpoint \(no config.json\)"):
        ckpt.load_config(tmp_path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_error_pickle_file(tmp_path: Path, suffix: str) -> None:
    f = tmp_path / f"model{suffix}"
    f.write_bytes(b"\x80\x04junk")
    with pytest.raises(DDSMInputError, match="pickle checkpoints are not supported; ddsm never unpickles files"):
        ckpt.load_config(f)
    with pytest.raises(DDSMInputError, match="ddsm never unpickles files"):
        ckpt.load_model_weights(tmp_path, make_model(0))


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_error_corrupt_safetensors(saved: Path, how: str) -> None:
    f = saved / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\xff" * 64)
    with pytest.raises(DDSMInputError, match="truncated or corrupt") as e:
        ckpt.load_model_weights(saved, make_model(0))
    assert "\n" not in str(e.value)


def test_error_newer_format_version(saved: Path) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    cfg["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DDSMInputError, match="format_version 99"):
        ckpt.load_config(saved)


def test_error_weights_do_not_match_model(saved: Path) -> None:
    with pytest.raises(DDSMInputError, match=r"weight 'inp.weight' has shape \(16, 5\) in the file but \(32, 5\)"):
        ckpt.load_model_weights(saved, make_model(0, hidden=32))
    with pytest.raises(DDSMInputError, match="unexpected weight 'label.weight'"):
        ckpt.load_model_weights(saved, TinyModel(K + 1, K, n_classes=0))
    bigger = make_model(0)
    bigger.extra = nn.Linear(2, 2)
    with pytest.raises(DDSMInputError, match="missing weight 'extra.weight'"):
        ckpt.load_model_weights(saved, bigger)


def test_error_no_training_state_and_bad_json(saved: Path) -> None:
    model = make_model(0)
    with pytest.raises(DDSMInputError, match="saved without training state"):
        ckpt.load_training_state(saved, model, None, torch.optim.AdamW(model.parameters()))
    (saved / "config.json").write_text("{not json")
    with pytest.raises(DDSMInputError, match="not valid JSON"):
        ckpt.load_config(saved)


def test_failed_save_keeps_previous_checkpoint_and_no_tmp(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = ckpt.save_file

    def flaky(tensors, path, metadata=None):
        calls["n"] += 1
        real(tensors, path, metadata=metadata)
        if calls["n"] == 2:
            raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", flaky)
    model = make_model(5)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(saved, model=model, model_name="tiny", process=ToyProcess(),
                             optimizer=torch.optim.AdamW(model.parameters()), step=2)
    assert no_tmp(saved)
    assert ckpt.load_config(saved)["step"] == 1
    old = make_model(0)
    loaded = make_model(9)
    ckpt.load_model_weights(saved, loaded)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), loaded.state_dict().values()))


# ------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_train_resume_and_cpu_load(tmp_path: Path) -> None:
    x, c = toy_data(20, seed=0)
    xv, cv = toy_data(16, seed=1)
    kw = dict(valid=Batch(xv, cv), config=small_config(), model_name="tiny",
              device="cuda")

    seed_everything(0)
    straight = make_model(0)
    train(ToyProcess(), straight, Batch(x, c), out_dir=tmp_path / "a", **kw)
    assert straight.out.weight.is_cuda

    def crash(step: int, info: dict) -> None:
        if step == 4:
            raise _Crash

    seed_everything(0)
    with pytest.raises(_Crash):
        train(ToyProcess(), make_model(0), Batch(x, c), out_dir=tmp_path / "b", on_step=crash, **kw)
    seed_everything(123)
    resumed = make_model(1).cuda()
    train(ToyProcess(), resumed, Batch(x, c), out_dir=tmp_path / "b", resume=True, **kw)
    for p1, p2 in zip(straight.state_dict().values(), resumed.state_dict().values()):
        # exact on CPU; on GPUs the same kernels on the same shapes are expected to agree too
        torch.testing.assert_close(p1, p2, rtol=0, atol=1e-6)

    cpu = TinyModel(**ckpt.load_config(tmp_path / "a")["model"]["options"])
    ckpt.load_model_weights(tmp_path / "a", cpu, raw=True)
    for p1, p2 in zip(straight.state_dict().values(), cpu.state_dict().values()):
        assert not p2.is_cuda and torch.equal(p1.cpu(), p2)


# ------------------------------------------------------------------------------------ micro-batches, signals, crashes
class DeterministicProcess(ToyProcess):
    """No randomness at all: the loss is a function of the weights and the batch only."""

    name = "deterministic"

    def loss(self, model, x0, *, cond=None, pad_mask=None, generator=None):
        B, Lx = x0.shape
        t = torch.full((B,), 0.5, device=x0.device)
        feats = torch.cat([F.one_hot(x0.roll(1, dims=1), self.K).float(), t[:, None, None].expand(B, Lx, 1)], -1)
        terms = F.cross_entropy(model(feats, t, cond).transpose(1, 2), x0, reduction="none")
        return _LossOutput(terms.mean(), terms)


@pytest.mark.parametrize("accum", [2, 3])
def test_grad_accum_weights_micro_batches_like_one_batch(accum: int) -> None:
    # Without noise, cutting the batch of 8 into micro-batches (uneven for 3: 3, 3, 2) must not
    # change the update: each micro-batch's mean loss is weighted by its share of the batch.
    x, _ = toy_data(32, seed=0)
    cfg = small_config(steps=4, eval_every=0, checkpoint_every=0, label_dropout=0.0)
    ref, acc = make_model(0, dropout=0.0), make_model(0, dropout=0.0)
    r1 = train(DeterministicProcess(), ref, x, config=cfg)
    r2 = train(DeterministicProcess(), acc, x, config=dataclasses.replace(cfg, grad_accum=accum))
    for (name, a), b in zip(ref.state_dict().items(), acc.state_dict().values()):
        if name != "calls":  # forward passes per step differ
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert [h["train_loss"] for h in r1["history"]] == pytest.approx([h["train_loss"] for h in r2["history"]],
                                                                    rel=1e-5)


def test_noise_is_defined_per_micro_batch() -> None:
    # The same micro-batch gets the same draws (noise, label dropout, model dropout) whatever else
    # runs before it; the global RNG is left as it was.
    from ddsm.seeding import derive_seed, seeded_global_rng

    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 2, 4)
    assert 0 <= derive_seed(2**63 - 1, 5) < 2**63
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with seeded_global_rng(derive_seed(7, 3, 1, 0)):
        a = torch.rand(3)
    with seeded_global_rng(derive_seed(7, 3, 1, 0)):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), before)
    with pytest.raises(RuntimeError), seeded_global_rng(1):
        raise RuntimeError
    assert torch.equal(torch.get_rng_state(), before)

    # a training run leaves the caller's global RNG untouched
    x, c = toy_data(16, seed=0)
    model = make_model(0)  # seeds the global generator itself
    before = torch.get_rng_state()
    train(ToyProcess(), model, Batch(x, c), config=small_config(steps=2, eval_every=0))
    assert torch.equal(torch.get_rng_state(), before)


def test_bf16_autocast_on_cpu_and_compile_goes_through_compile_or_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddsm.training import loop

    compiled: list[str] = []

    def spy(net, **kw):  # the real compile costs a minute of C++ on a CPU; its fallback is tested below
        compiled.append(type(net).__name__)
        return net

    monkeypatch.setattr(loop, "compile_or_eager", spy)
    x, c = toy_data(32, seed=0)
    model = make_model(0)
    dtypes: list[torch.dtype] = []
    model.inp.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    res = train(ToyProcess(), model, Batch(x, c), config=small_config(steps=3, eval_every=0, bf16=True, compile=True))
    assert dtypes and all(d == torch.bfloat16 for d in dtypes)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(res["final_train_loss"])
    assert compiled == ["TinyModel"]


def test_compile_failure_falls_back_to_eager(caplog: pytest.LogCaptureFixture) -> None:
    from ddsm.compiling import CompiledOrEager

    def broken(*args, **kwargs):
        torch.rand(5)  # consumes global randomness before failing: the fallback must undo it
        raise RuntimeError("backend compiler failed\nlong details")

    eager = lambda v: v + torch.rand(1)  # noqa: E731
    fn = CompiledOrEager(eager, broken)
    torch.manual_seed(3)
    with caplog.at_level("WARNING", logger="ddsm.compiling"):
        got = fn(torch.zeros(1))
    torch.manual_seed(3)
    assert torch.equal(got, eager(torch.zeros(1)))
    assert "torch.compile failed (RuntimeError: backend compiler failed); running without" in caplog.text
    assert fn.compiled is None


def test_signal_checkpoints_the_step_and_resume_is_exact(tmp_path: Path) -> None:
    import signal

    from ddsm.training import TrainingInterrupted

    x, c = toy_data(20, seed=0)
    kw = dict(config=small_config(steps=8, checkpoint_every=100), model_name="tiny")
    straight = make_model(0)
    train(ToyProcess(), straight, Batch(x, c), out_dir=tmp_path / "a", **kw)

    def send(step: int, info: dict) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # noted during step 3, acted on after step 4

    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as e:
        train(ToyProcess(), make_model(0), Batch(x, c), out_dir=tmp_path / "b", on_step=send, **kw)
    assert e.value.step == 4 and e.value.exit_code == 130 and e.value.checkpoint == tmp_path / "b"
    assert "SIGINT after step 4" in str(e.value) and "\n" not in str(e.value)
    assert signal.getsignal(signal.SIGINT) is previous
    assert ckpt.load_config(tmp_path / "b")["step"] == 4 and ckpt.has_training_state(tmp_path / "b")

    resumed = make_model(1)
    train(ToyProcess(), resumed, Batch(x, c), out_dir=tmp_path / "b", resume=True, **kw)
    for p1, p2 in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p1, p2)


def test_crash_in_the_middle_of_a_save_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddsm.training import BACKUP_DIR, recover_checkpoint

    x, c = toy_data(20, seed=0)
    kw = dict(config=small_config(steps=6, checkpoint_every=2, eval_every=0), model_name="tiny")
    straight = make_model(0)
    train(ToyProcess(), straight, Batch(x, c), out_dir=tmp_path / "a", **kw)

    # Die like SIGKILL would at the worst moment of the save of step 4: the old config.json is gone
    # and the new weight files are already in place, but the new config.json is not written yet.
    real, calls = ckpt.atomic_write_text, {"n": 0}

    def dying(path, text):
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Crash
        real(path, text)

    monkeypatch.setattr(ckpt, "atomic_write_text", dying)
    out = tmp_path / "b"
    with pytest.raises(_Crash):
        train(ToyProcess(), make_model(0), Batch(x, c), out_dir=out, **kw)
    monkeypatch.setattr(ckpt, "atomic_write_text", real)
    assert not (out / "config.json").exists() and (out / BACKUP_DIR / "config.json").is_file()

    assert recover_checkpoint(out)
    assert ckpt.load_config(out)["step"] == 2 and not (out / BACKUP_DIR).exists()
    assert not recover_checkpoint(out)  # nothing left to do
    resumed = make_model(1)
    train(ToyProcess(), resumed, Batch(x, c), out_dir=out, resume=True, **kw)
    for p1, p2 in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p1, p2)
    assert {p.name for p in out.iterdir()} == {
        "config.json", "model.safetensors", "model_raw.safetensors", "optimizer.safetensors", "train_state.json"}


def test_train_config_new_fields() -> None:
    cfg = TrainConfig(grad_accum=4, bf16=True, compile=True)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("grad_accum", "bf16", "compile")}
    assert TrainConfig.from_dict(old).grad_accum == 1  # config.json from before these fields
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0)
