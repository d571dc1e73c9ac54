"""Data-parallel training: 2 CPU processes (gloo) against one process with the same global batch.

``test_two_ranks_match_one_process`` starts this very file as a torchrun script
(``python -m torch.distributed.run --standalone --nproc_per_node 2 test_ddp.py OUT``); each rank trains
the same tiny masked-diffusion MLP for a few steps and saves its final weights. The weights must be
identical on both ranks and equal (to float tolerance) to a single-process run that accumulates the
same micro-batches: the noise is drawn per micro-batch, so the split over processes does not change
it. The batch of 10 is cut into 4 uneven micro-batches in one of the cases (3, 3, 2, 2).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from ddsm.checkpoint import load_model_weights
from ddsm.distributed import init_from_env, shutdown, strip_nproc, torchrun_command
from ddsm.models import build_model
from ddsm.processes import build_process
from ddsm.training import Batch, TrainConfig, micro_batch_bounds, train

N_SEQ, SEQ_LEN, K = 40, 12, 4
#: (grad_accum on each of 2 ranks, batch size); the single-process reference uses 2 * grad_accum
CASES = ((1, 8), (2, 10))
TOL = dict(rtol=1e-5, atol=1e-5)


def _problem(grad_accum: int, batch_size: int) -> dict[str, Any]:
    """A tiny conditional, padded masked-diffusion problem; identical in every process."""
    process = build_process("masked", K)
    torch.manual_seed(0)
    model = build_model("mlp", process.in_channels, process.out_channels, 2, hidden=16)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, K, (N_SEQ, SEQ_LEN), generator=g)
    cond = torch.randint(0, 2, (N_SEQ,), generator=g)
    pad = torch.ones(N_SEQ, SEQ_LEN, dtype=torch.bool)
    pad[::3, -3:] = False  # some padded rows, so micro-batch losses average over unequal token counts
    config = TrainConfig(steps=5, batch_size=batch_size, lr=1e-2, warmup_steps=1, grad_clip=1.0,
                         ema_decay=0.5, eval_every=0, log_every=1, checkpoint_every=0, seed=3,
                         label_dropout=0.3, grad_accum=grad_accum)
    return dict(process=process, model=model, train_data=Batch(x, cond, pad), config=config)


def _run(grad_accum: int, batch_size: int, out_dir: Path | None = None) -> tuple[dict, dict, list]:
    p = _problem(grad_accum, batch_size)
    summary = train(p.pop("process"), p["model"], p.pop("train_data"), out_dir=out_dir, model_name="mlp",
                    **{k: v for k, v in p.items() if k != "model"})
    raw = {k: v.detach().clone() for k, v in p["model"].state_dict().items()}
    ema = {k: v.clone() for k, v in summary["ema"].shadow.items()}
    return raw, ema, [h["train_loss"] for h in summary["history"]]


def _worker(out: Path) -> None:
    """Body of each torchrun rank: train every case, save this rank's weights and losses."""
    torch.set_num_threads(1)
    ctx = init_from_env("cpu")
    assert ctx.world_size == 2
    try:
        for accum, batch in CASES:
            raw, ema, losses = _run(accum, batch, out_dir=out / f"ckpt_{accum}")
            save_file(raw, str(out / f"raw_{accum}_rank{ctx.rank}.safetensors"))
            save_file(ema, str(out / f"ema_{accum}_rank{ctx.rank}.safetensors"))
            (out / f"losses_{accum}_rank{ctx.rank}.json").write_text(json.dumps(losses))
    finally:
        shutdown()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=_env())
    assert res.returncode == 0, res.stderr[-4000:]

    for accum, batch in CASES:
        raw0, raw1 = (load_file(str(tmp_path / f"raw_{accum}_rank{r}.safetensors")) for r in (0, 1))
        ema0, ema1 = (load_file(str(tmp_path / f"ema_{accum}_rank{r}.safetensors")) for r in (0, 1))
        losses0, losses1 = (json.loads((tmp_path / f"losses_{accum}_rank{r}.json").read_text()) for r in (0, 1))
        single_raw, single_ema, single_losses = _run(2 * accum, batch)  # same micro-batches, one process

        init_model = _problem(1, batch)["model"]
        init = init_model.state_dict()
        trainable = {n for n, _ in init_model.named_parameters()}
        for name in single_raw:
            assert torch.equal(raw0[name], raw1[name]), f"ranks differ in {name}"
            assert torch.equal(ema0[name], ema1[name]), f"rank EMAs differ in {name}"
            torch.testing.assert_close(raw0[name], single_raw[name], **TOL, msg=f"{name} (accum {accum})")
            torch.testing.assert_close(ema0[name], single_ema[name], **TOL, msg=f"EMA {name} (accum {accum})")
            assert name not in trainable or not torch.equal(raw0[name], init[name]), f"{name} did not train"
        assert losses0 == losses1
        assert losses0 == pytest.approx(single_losses, rel=1e-5, abs=1e-6)

        # rank 0 wrote the checkpoint: its raw weights are the ranks' weights
        model = _problem(1, batch)["model"]
        cfg = load_model_weights(tmp_path / f"ckpt_{accum}", model, raw=True)
        assert cfg["step"] == 5 and cfg["train"]["grad_accum"] == accum
        for name, value in model.state_dict().items():
            assert torch.equal(value, raw0[name])
    assert not list(tmp_path.rglob("*.tmp"))


def test_micro_batches_and_split_independence() -> None:
    assert micro_batch_bounds(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert micro_batch_bounds(8, 1) == [(0, 8)]
    with pytest.raises(ValueError):
        micro_batch_bounds(3, 4)
    # one process: grad_accum 2 and 4 cut the batch differently, hence different noise and weights
    a, _, _ = _run(2, 8)
    b, _, _ = _run(2, 8)
    c, _, _ = _run(4, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_batch_smaller_than_micro_batches_is_rejected() -> None:
    from ddsm.errors import DDSMInputError

    with pytest.raises(DDSMInputError, match="smaller than its 4 micro-batches"):
        _run(4, 3)


def test_launcher_command_line() -> None:
    argv = ["-v", "train", "--data", "x.fa", "--nproc", "2", "--out", "o", "--nproc=3", "--steps", "5"]
    assert strip_nproc(argv) == ["-v", "train", "--data", "x.fa", "--out", "o", "--steps", "5"]
    cmd = torchrun_command(argv, 2)
    assert cmd[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert cmd[7:] == ["ddsm", "-v", "train", "--data", "x.fa", "--out", "o", "--steps", "5"]


def _cli_has(flag: str) -> bool:
    from ddsm.cli import build_parser

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        build_parser().parse_args(["train", "--help"])
    return flag in buf.getvalue()


@pytest.mark.skipif(not (_cli_has("--nproc") and _cli_has("--grad-accum")),
                    reason="ddsm train --nproc / --grad-accum are not wired into ddsm.cli yet")
def test_cli_nproc_matches_grad_accum(tmp_path: Path) -> None:
    rng = random.Random(5)
    fasta = tmp_path / "train.fasta"
    fasta.write_text("".join(f">s{i}\n{''.join(rng.choice('ACGT') for _ in range(16))}\n" for i in range(40)))
    common = ["train", "--data", str(fasta), "--process", "masked", "--model", "mlp", "--set-model", "hidden=16",
              "--steps", "6", "--batch-size", "8", "--seed", "2", "--device", "cpu", "--quiet"]
    res = subprocess.run([sys.executable, "-m", "ddsm", *common, "--out", str(tmp_path / "ddp"), "--nproc", "2"],
                         capture_output=True, text=True, timeout=180, env=_env())
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.count("trained ") == 1, res.stdout  # only rank 0 reports
    res = subprocess.run([sys.executable, "-m", "ddsm", *common, "--out", str(tmp_path / "one"), "--grad-accum", "2"],
                         capture_output=True, text=True, timeout=180, env=_env())
    assert res.returncode == 0, res.stderr[-4000:]
    a = load_file(str(tmp_path / "ddp" / "model_raw.safetensors"))
    b = load_file(str(tmp_path / "one" / "model_raw.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], **TOL)
    assert json.loads((tmp_path / "ddp" / "history.json").read_text())


if __name__ == "__main__":  # a torchrun rank of test_two_ranks_match_one_process
    _worker(Path(sys.argv[1]))
