"""``ddsm sudoku train``: the Sudoku recipe through the one trainer (resume, exact continuation,
data-parallel processes, one error line for bad input)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddsm.cli import main
from ddsm.sudoku.training import SudokuRecipe, sudoku_train_config, train_sudoku

TINY = ["--pool", "16", "--d-model", "8", "--layers", "1", "--hidden", "8", "--batch-size", "8",
        "--device", "cpu", "--quiet"]  # no --threads: it would stay set for the rest of the test session
RECIPE = SudokuRecipe(pool_size=16, model={"d_model": 8, "n_layers": 1, "hidden": 8}, process={"n_train_times": 8})


def test_train_then_resume_and_load(tmp_path: Path, capsys) -> None:
    from ddsm.checkpoint import load_config
    from ddsm.sudoku.model_io import load_sudoku_model

    out = tmp_path / "run"
    assert main(["sudoku", "train", "--out", str(out), "--steps", "6", "--focus-tau", "0.5,3", *TINY]) == 0
    assert "to step 6" in capsys.readouterr().out
    config = load_config(out)
    assert config["model"]["name"] == "sudoku" and config["process"]["name"] == "jacobi"
    assert config["process"]["options"]["focus_tau_min"] == 0.5 and config["train"]["lr_floor"] == 0.1
    assert config["recipe"]["pool_size"] == 16 and config["seq_len"] == 81
    sm = load_sudoku_model(out, precision="fp32")
    assert sm.net.n_layers == 1 and sm.process.K == 9
    # --resume takes the saved recipe and train config; only --steps changes
    assert main(["sudoku", "train", "--out", str(out), "--steps", "9", "--resume", "--device", "cpu", "--quiet"]) == 0
    again = load_config(out)
    assert again["step"] == 9 and again["recipe"] == config["recipe"]
    assert {k: v for k, v in again["train"].items() if k != "steps"} == {
        k: v for k, v in config["train"].items() if k != "steps"}


@pytest.mark.parametrize("argv, needle", [
    (["--focus-tau", "0.5"], "--focus-tau"),
    (["--pool", "0"], "pool"),
    (["--lr", "-1"], "lr"),
])
def test_bad_input_is_one_error_line(tmp_path: Path, capsys, argv, needle) -> None:
    code = main(["sudoku", "train", "--out", str(tmp_path / "run"), "--steps", "2", *TINY, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ddsm: error:") and needle in err[0]
    assert not (tmp_path / "run" / "config.json").exists()


def test_existing_checkpoint_is_not_replaced(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["sudoku", "train", "--out", str(out), "--steps", "2", *TINY]) == 0
    before = (out / "model.safetensors").read_bytes()
    assert main(["sudoku", "train", "--out", str(out), "--steps", "2", *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before


class _Crash(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """The grid stream draws each micro-batch from its own seeded generator, so a resumed run needs
    no stream state and ends with the weights of an uninterrupted one."""
    cfg = sudoku_train_config("cpu", steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2, bf16=False)
    train_sudoku(RECIPE, cfg, tmp_path / "a")

    def crash(step: int, info: dict) -> None:
        if step == 3:
            raise _Crash

    with pytest.raises(_Crash):
        train_sudoku(RECIPE, cfg, tmp_path / "b", on_step=crash)
    train_sudoku(RECIPE, cfg, tmp_path / "b", resume=True)
    a = load_file(str(tmp_path / "a" / "model_raw.safetensors"))
    b = load_file(str(tmp_path / "b" / "model_raw.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_two_processes_match_grad_accum(tmp_path: Path) -> None:
    common = ["sudoku", "train", "--steps", "3", "--seed", "1", "--precision", "fp32", *TINY]
    res = subprocess.run([sys.executable, "-m", "ddsm", *common, "--out", str(tmp_path / "ddp"), "--nproc", "2"],
                         capture_output=True, text=True, timeout=240, env=_env())
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.count("trained ") == 1, res.stdout  # only rank 0 reports
    assert main([*common, "--out", str(tmp_path / "one"), "--grad-accum", "2"]) == 0
    a = load_file(str(tmp_path / "ddp" / "model_raw.safetensors"))
    b = load_file(str(tmp_path / "one" / "model_raw.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
