"""``ddsm sample --sampler``: reaches the process's declared sampler (masked: first-hitting), recorded in
headers, argv and sidecar; passed to ``design`` only when given; refused with one line where the process
has no such sampler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pytest
from test_cli import assert_input_error

import ddsm.api
import ddsm.cli
from conftest import CPU, TINY_TRAIN


def _spy_design(monkeypatch) -> list[Optional[str]]:
    """Record the ``sampler`` each ``design`` call gets (the real design still runs)."""
    seen: list[Optional[str]] = []
    real = ddsm.api.design

    def design(*a: Any, sampler: Optional[str] = None, **kw: Any):
        seen.append(sampler)
        return real(*a, sampler=sampler, **kw)

    monkeypatch.setattr(ddsm.api, "design", design)
    return seen


@pytest.fixture(scope="module")
def masked_model(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("masked") / "ckpt"
    assert ddsm.cli.main(["train", "--data", str(data_dir / "train.fasta"), "--out", str(out), "--process", "masked",
                          *TINY_TRAIN, *CPU]) == 0
    return out


def test_first_hitting_sampler_of_a_masked_model(cli, masked_model, tmp_path, monkeypatch):
    seen = _spy_design(monkeypatch)
    out = tmp_path / "d.fasta"
    res = cli("sample", masked_model, "-n", "3", "-o", out, "--sampler", "first-hitting", "--seed", "4", *CPU)
    assert res.code == 0, res.err
    assert seen == ["first-hitting"]
    lines = out.read_text().splitlines()
    headers, seqs = lines[0::2], lines[1::2]
    assert len(seqs) == 3 and all(set(q) <= set("ACGT") and q for q in seqs)
    assert all("sampler=first-hitting" in h for h in headers)
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    assert side["settings"]["sampler"] == "first-hitting"
    i = side["argv"].index("--sampler")
    assert side["argv"][i + 1] == "first-hitting"
    again = tmp_path / "e.fasta"  # the seed fixes the draw
    assert cli("sample", masked_model, "-n", "3", "-o", again, "--sampler", "first-hitting", "--seed", "4",
               *CPU).code == 0
    assert again.read_text().splitlines()[1::2] == seqs


def test_no_sampler_leaves_outputs_as_before(cli, trained_model, tmp_path, monkeypatch):
    seen = _spy_design(monkeypatch)
    out = tmp_path / "d.fasta"
    assert cli("sample", trained_model, "-n", "2", "-o", out, "--steps", "3", *CPU).code == 0
    assert seen == [None]
    assert "sampler" not in out.read_text()
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    assert "sampler" not in side["settings"] and "--sampler" not in side["argv"]


def test_bad_sampler_is_one_error_line(cli, trained_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # argparse choices
        cli("sample", trained_model, "-n", "2", "-o", tmp_path / "d.fasta", "--sampler", "euler", *CPU)
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_sampler_the_process_lacks_is_an_input_error(cli, trained_model, tmp_path):
    # trained_model is a jacobi model: it has the ancestral (reverse-SDE grid) sampler only
    out = tmp_path / "d.fasta"
    res = cli("sample", trained_model, "-n", "2", "-o", out, "--sampler", "first-hitting", *CPU)
    assert_input_error(res, "first-hitting")
    assert not out.exists()


def test_substeps_reach_the_jacobi_step_and_are_recorded(cli, trained_model, tmp_path):
    out, one = tmp_path / "d.fasta", tmp_path / "one.fasta"
    assert cli("sample", trained_model, "-n", "3", "-o", out, "--steps", "3", "--substeps", "2", "--seed", "1",
               *CPU).code == 0
    assert all("substeps=2" in h for h in out.read_text().splitlines()[0::2])
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    i = side["argv"].index("--substeps")
    assert side["argv"][i + 1] == "2"
    assert cli("sample", trained_model, "-n", "3", "-o", one, "--steps", "3", "--substeps", "1", "--seed", "1",
               *CPU).code == 0
    # the sub-steps change the draws (the same seed, a different integrator)
    assert one.read_text().splitlines()[1::2] != out.read_text().splitlines()[1::2]


def test_grid_focus_reaches_the_jacobi_grid_and_is_recorded(cli, trained_model, masked_model, tmp_path):
    out, plain = tmp_path / "d.fasta", tmp_path / "plain.fasta"
    assert cli("sample", trained_model, "-n", "3", "-o", out, "--steps", "4", "--grid-focus", "0.8", "--seed", "1",
               *CPU).code == 0
    assert all("grid_focus=0.8" in h for h in out.read_text().splitlines()[0::2])
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    assert side["argv"][side["argv"].index("--grid-focus") + 1] == "0.8"
    assert cli("sample", trained_model, "-n", "3", "-o", plain, "--steps", "4", "--seed", "1", *CPU).code == 0
    assert plain.read_text().splitlines()[1::2] != out.read_text().splitlines()[1::2]  # other step times
    bad = tmp_path / "bad.fasta"
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", bad, "--grid-focus", "1", *CPU), "grid-focus")
    assert_input_error(cli("sample", masked_model, "-n", "2", "-o", bad, "--grid-focus", "0.5", *CPU), "grid-focus")
    assert not bad.exists()


def test_bad_substeps_are_one_error_line(cli, trained_model, masked_model, tmp_path):
    out = tmp_path / "d.fasta"
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", out, "--substeps", "0", *CPU), "substeps")
    assert_input_error(cli("sample", masked_model, "-n", "2", "-o", out, "--substeps", "4", *CPU), "substeps")
    assert not out.exists()


def test_extrapolate_reaches_the_held_correction_and_is_recorded(cli, trained_model, masked_model, tmp_path):
    out, held, plain = tmp_path / "d.fasta", tmp_path / "held.fasta", tmp_path / "plain.fasta"
    # 8 sequences: at 4 steps the tiny model's corrections are small, and 3 sequences' tokens can
    # come out the same with either held correction
    assert cli("sample", trained_model, "-n", "8", "-o", out, "--steps", "4", "--extrapolate", "1", "--seed", "1",
               *CPU).code == 0
    assert all("extrapolate=1" in h for h in out.read_text().splitlines()[0::2])
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    assert side["argv"][side["argv"].index("--extrapolate") + 1] == "1.0"
    assert cli("sample", trained_model, "-n", "8", "-o", held, "--steps", "4", "--extrapolate", "0", "--seed", "1",
               *CPU).code == 0
    assert all("extrapolate=0" in h for h in held.read_text().splitlines()[0::2])
    assert held.read_text().splitlines()[1::2] != out.read_text().splitlines()[1::2]  # another held correction
    # a new model records the default, 1, which the command line then uses
    assert cli("sample", trained_model, "-n", "8", "-o", plain, "--steps", "4", "--seed", "1", *CPU).code == 0
    assert "extrapolate" not in plain.read_text()
    assert plain.read_text().splitlines()[1::2] == out.read_text().splitlines()[1::2]
    bad = tmp_path / "bad.fasta"
    for value in ("-1", "nan"):
        assert_input_error(cli("sample", trained_model, "-n", "2", "-o", bad, "--extrapolate", value, *CPU),
                           "extrapolate")
    assert_input_error(cli("sample", masked_model, "-n", "2", "-o", bad, "--extrapolate", "0.5", *CPU), "extrapolate")
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", bad, "--extrapolate", "0.5", "--reward", "gc:0.5",
                           *CPU), "extrapolate")
    assert not bad.exists()


def test_extrapolation_starts_afresh_in_every_batch(trained_model, monkeypatch):
    """``design(extrapolate=alpha)`` runs the loop with a fresh :class:`ExtrapolatedCorrection` per batch
    (the process's ``sampling_model``: one instance per run, called once per step, so the second batch's
    first call cannot extrapolate from the first batch's last one), the same designs as two runs of the
    loop by hand with the same generator; None is the model's own (1 for a new model)."""
    import copy

    import torch

    import ddsm.processes.jacobi
    from ddsm.api import design, load_run
    from ddsm.sampling import ExtrapolatedCorrection, sample

    calls: list[list[float]] = []

    class Spy(ExtrapolatedCorrection):
        def __init__(self, *a: Any) -> None:
            super().__init__(*a)
            calls.append([])

        def __call__(self, x, t, cond=None):
            calls[-1].append(float(t[0]))
            return super().__call__(x, t, cond)

    monkeypatch.setattr(ddsm.processes.jacobi, "ExtrapolatedCorrection", Spy)
    run = load_run(trained_model)
    got = design(run, 4, steps=6, batch_size=2, extrapolate=50.0, generator=torch.Generator().manual_seed(5)).sequences
    assert len(calls) == 2 and all(len(c) == 6 and c == sorted(c, reverse=True) for c in calls)
    gen = torch.Generator().manual_seed(5)
    fresh = copy.copy(run.process)
    fresh.extrapolate = 50.0  # each sample() call is one run: its own new wrapper (and, self-conditioned, estimate)
    by_hand = [run.alphabet.decode(row) for _ in range(2)
               for row in sample(fresh, run.model, (2, run.seq_len), steps=6, generator=gen).numpy()]
    assert got == by_hand

    def draw(**kw: Any) -> list:
        return design(run, 4, steps=6, batch_size=2, generator=torch.Generator().manual_seed(5), **kw).sequences

    assert draw(extrapolate=0.0) != got
    assert draw() == draw(extrapolate=1.0)  # the new model's recorded default
