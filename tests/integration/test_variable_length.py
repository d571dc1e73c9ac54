"""Variable-length models: a learned end letter, designs that follow the training lengths, length windows."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from test_cli import assert_input_error, read_fasta_simple, read_tsv

from conftest import CPU
from ddsm.cli import main

LENGTHS = [12, 16, 20, 28, 36]


@pytest.fixture(scope="module")
def vl(tmp_path_factory):
    d = tmp_path_factory.mktemp("vl")
    rng = random.Random(0)
    lengths = [rng.choice(LENGTHS) for _ in range(400)]
    (d / "train.fa").write_text("".join(f">s{i}\n{''.join(rng.choice('ACGT') for _ in range(n))}\n"
                                        for i, n in enumerate(lengths)))
    assert main(["train", "--data", str(d / "train.fa"), "--out", str(d / "m"), "--variable-length",
                 "--process", "masked", "--model", "conv", "--set-model", "hidden=32", "--set-model", "n_blocks=4",
                 "--steps", "300", "--batch-size", "32", *CPU]) == 0
    return d, np.array(lengths)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.arange(0, max(a.max(), b.max()) + 1)
    return float(np.abs((a[:, None] <= grid).mean(0) - (b[:, None] <= grid).mean(0)).max())


def test_checkpoint_records_the_end_letter(vl):
    d, _ = vl
    cfg = json.loads((d / "m" / "config.json").read_text())
    assert cfg["alphabet"] == {"name": "dna", "letters": "ACGT-", "end": "-"} and cfg["seq_len"] == 36
    assert cfg["process"]["options"]["K"] == 5


def test_design_lengths_follow_the_training_lengths(cli, vl, tmp_path):
    d, train_lengths = vl
    res = cli("sample", d / "m", "-n", "200", "-o", tmp_path / "d.fa", "--steps", "50", *CPU)
    assert res.code == 0, res.err
    seqs = [s for _, s in read_fasta_simple(tmp_path / "d.fa")]
    assert all(set(s) <= set("ACGT") for s in seqs)  # the end letter never reaches the output
    got = np.array([len(s) for s in seqs])
    # two-sample Kolmogorov-Smirnov distance; a fixed-length sampler would be at 0.8 or more
    assert _ks(train_lengths, got) < 0.25, sorted(got.tolist())
    modes = np.isin(got, LENGTHS).mean()
    assert modes > 0.5, modes  # most designs have one of the five training lengths


def test_length_window_and_score_lengths(cli, vl, tmp_path):
    d, _ = vl
    res = cli("sample", d / "m", "-n", "20", "-o", tmp_path / "w.fa", "--steps", "30", "--length-range", "16:20", *CPU)
    assert res.code == 0, res.err
    seqs = [s for _, s in read_fasta_simple(tmp_path / "w.fa")]
    assert seqs and all(16 <= len(s) <= 20 for s in seqs)
    res = cli("score", d / "m", tmp_path / "w.fa", "-o", tmp_path / "s.tsv", "--steps", "5", *CPU)
    assert res.code == 0, res.err
    assert [int(r["length"]) for r in read_tsv(tmp_path / "s.tsv")] == [len(s) for s in seqs]


def test_length_options_refused_on_fixed_length_models(cli, trained_model, tmp_path):
    assert_input_error(cli("sample", trained_model, "-n", "2", "-o", tmp_path / "x.fa", "--design-length", "10", *CPU),
                       "variable-length model")


def test_score_refuses_records_longer_than_the_maximum(cli, vl, tmp_path):
    d, _ = vl
    (tmp_path / "long.fa").write_text(">a\n" + "ACGT" * 10 + "\n")
    assert_input_error(cli("score", d / "m", tmp_path / "long.fa", "-o", tmp_path / "s.tsv", *CPU), "--crop")
