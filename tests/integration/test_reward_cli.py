"""Reward-guided design through the API and the CLI."""

from __future__ import annotations

import json

import pytest
from test_cli import assert_input_error, read_fasta_simple

from conftest import CPU
from ddsm.api import design, load_run


def _gc(s: str) -> float:
    return (s.count("G") + s.count("C")) / len(s)


def test_alpha_infinity_is_unguided_byte_for_byte(trained_model):
    import torch

    run = load_run(trained_model)
    plain = design(run, 6, steps=5, generator=torch.Generator().manual_seed(4))
    inf = design(run, 6, steps=5, generator=torch.Generator().manual_seed(4), reward="gc:0.9", alpha=float("inf"))
    assert plain.sequences == inf.sequences
    assert inf.rewards == pytest.approx([-100 * abs(_gc(s) - 0.9) for s in inf.sequences])


@pytest.mark.parametrize("method", ["smc", "svdd"])
def test_reward_moves_designs_and_keeps_constraints(cli, trained_model, tmp_path, method):
    out, base = tmp_path / "g.fa", tmp_path / "b.fa"
    args = ["-n", "24", "--steps", "6", "--seed", "1", "--forbid", "GGG", *CPU]
    assert cli("sample", trained_model, "-o", base, *args).code == 0
    res = cli("sample", trained_model, "-o", out, *args, "--reward", "gc:0.9", "--reward-method", method,
              "--particles", "6", "--alpha", "0.5")
    assert res.code == 0, res.err
    records = {h.split()[0]: s for h, s in read_fasta_simple(out)}
    guided = list(records.values())
    plain = [s for _, s in read_fasta_simple(base)]
    assert sum(map(_gc, guided)) / len(guided) > sum(map(_gc, plain)) / len(plain) + 0.05
    assert all("GGG" not in s and "CCC" not in s for s in guided)  # the constraint (both strands) holds
    side = json.loads((tmp_path / "g.fa.json").read_text())
    assert side["settings"]["reward"]["method"] == method
    written = [d for d in side["designs"] if "failed" not in d]
    assert len(written) == len(guided) >= 20
    assert all(d["reward"] == pytest.approx(-100 * abs(_gc(records[d["id"]]) - 0.9), abs=1e-3) for d in written)


def test_reward_errors(cli, trained_model, tmp_path):
    o = tmp_path / "x.fa"
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", o, "--reward", "oracle", *CPU), "--class")
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", o, "--reward", "gc:high", *CPU), "gc:TARGET")
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", o, "--reward", "luck", *CPU), "choose one of")
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", o, "--reward", "gc:0.5", "--alpha", "0", *CPU),
                       "--alpha")
    assert not o.exists()


def test_evaluate_reports_the_models_likelihood(cli, trained_model, data_dir, tmp_path):
    out = tmp_path / "d.fa"
    assert cli("sample", trained_model, "-n", "12", "-o", out, "--steps", "4", *CPU).code == 0
    res = cli("evaluate", out, "--reference", data_dir / "seqs.fasta", "--no-motifs", "--oracle", "none",
              "--likelihood-model", trained_model, "--json", tmp_path / "m.json",
              "--device", "cpu", "--quiet")
    assert res.code == 0, res.err
    m = json.loads((tmp_path / "m.json").read_text())["metrics"]["all"]
    assert 0.5 < m["model_bits_designed"] < 4 and 0.5 < m["model_bits_reference"] < 4
    assert "model_bits_designed" in res.out
