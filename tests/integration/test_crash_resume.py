"""Crash safety of ``ddsm train`` in a real subprocess: SIGKILL then ``--resume``, and SIGTERM.

The runs use a tiny masked-diffusion MLP on the CPU with one thread (deterministic CPU ops), so a
run that is killed and resumed must end with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddsm.checkpoint import has_training_state

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WEIGHT_FILES = ("model.safetensors", "model_raw.safetensors")


def _fasta(folder: Path) -> Path:
    rng = random.Random(11)
    path = folder / "train.fasta"
    path.write_text("".join(f">s{i}\n{''.join(rng.choice('ACGT') for _ in range(24))}\n" for i in range(40)))
    return path


def _args(data: Path, out: Path, steps: int, every: int) -> list[str]:
    return [sys.executable, "-m", "ddsm", "train", "--data", str(data), "--out", str(out), "--process", "masked",
            "--model", "mlp", "--set-model", "hidden=16", "--steps", str(steps), "--batch-size", "8",
            "--checkpoint-every", str(every), "--seed", "4", "--device", "cpu", "--quiet"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"  # one thread: the same float sums in every run
    return env


def _step(out: Path) -> int:
    """Step of the complete checkpoint in ``out`` (-1 when there is none yet)."""
    try:
        return int(json.loads((out / "config.json").read_text())["step"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def _start_and_wait(cmd: list[str], out: Path, at_least: int, timeout: float = 60.0) -> subprocess.Popen:
    """Start ``cmd`` and return once ``out`` holds a checkpoint of step >= ``at_least``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + timeout
    while _step(out) < at_least:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint appeared in time")
        time.sleep(0.002)
    return proc


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    data, steps = _fasta(tmp_path), 300
    killed = tmp_path / "killed"
    proc = _start_and_wait(_args(data, killed, steps, 5), killed, 10)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    at_kill = _step(killed)
    assert 10 <= at_kill < steps, "the run must be killed in the middle"

    _run(_args(data, killed, steps, 5) + ["--resume"])
    straight = tmp_path / "straight"
    _run(_args(data, straight, steps, 5))

    assert _step(killed) == _step(straight) == steps
    for name in WEIGHT_FILES:
        a, b = load_file(str(killed / name)), load_file(str(straight / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after kill + resume"
    ha = json.loads((killed / "history.json").read_text())
    hb = json.loads((straight / "history.json").read_text())
    assert _strip(ha) == _strip(hb)
    assert not list(killed.rglob("*.tmp")) and not (killed / ".previous").exists()


def test_sigterm_checkpoints_the_step_and_exits_nonzero(tmp_path: Path) -> None:
    data, steps, every = _fasta(tmp_path), 5000, 50
    out = tmp_path / "run"
    proc = _start_and_wait(_args(data, out, steps, every), out, every)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddsm: "), stderr
    step = _step(out)
    assert every <= step < steps and has_training_state(out)
    named = re.search(r"after step (\d+)", lines[0])
    if named:  # the CLI prints TrainingInterrupted's message (naming the step) once it is wired
        assert int(named.group(1)) == step
        assert proc.returncode == 128 + signal.SIGTERM
    assert not list(out.rglob("*.tmp")) and not (out / ".previous").exists()
    assert stdout == ""
