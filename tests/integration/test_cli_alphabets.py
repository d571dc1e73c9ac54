"""Users' own data through the CLI: protein constraints, inference, labelled files, bad headers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_cli import assert_input_error, read_fasta_simple

from conftest import CPU, TINY_TRAIN, random_dna, write_fasta

AA = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(scope="module")
def protein_model(tmp_path_factory) -> Path:
    from ddsm.cli import main

    d = tmp_path_factory.mktemp("protein")
    rng = random.Random(7)
    # lysine-rich peptides, so that an unconstrained sampler would emit KK often
    seqs = ["".join(rng.choice(AA + "KKKKKK") for _ in range(16)) for _ in range(40)]
    write_fasta(d / "pep.fasta", seqs)
    out = d / "model"
    assert main(["train", "--data", str(d / "pep.fasta"), "--out", str(out), *TINY_TRAIN,
                 "--process", "masked", *CPU]) == 0
    return out


def test_protein_forbid_is_literal_and_exact(cli, protein_model, tmp_path):
    out = tmp_path / "d.fasta"
    res = cli("sample", protein_model, "-n", "12", "-o", out, "--steps", "4", "--forbid", "KK", "RR", *CPU)
    assert res.code == 0, res.err
    seqs = [s for _, s in read_fasta_simple(out)]
    assert seqs and all("KK" not in s and "RR" not in s for s in seqs)
    # RR is literal: IUPAC [AG][AG] pairs are still allowed and do occur
    assert any(pair in s for s in seqs for pair in ("AA", "AG", "GA", "GG"))


def test_protein_fixed_n_is_asparagine_and_gc_is_refused(cli, protein_model, tmp_path):
    out = tmp_path / "f.fasta"
    res = cli("sample", protein_model, "-n", "3", "-o", out, "--steps", "4", "--fixed", "N" + "." * 14 + "W", *CPU)
    assert res.code == 0, res.err
    assert all(s[0] == "N" and s[-1] == "W" for _, s in read_fasta_simple(out))
    assert_input_error(cli("sample", protein_model, "-n", "3", "-o", tmp_path / "g.fasta", "--gc", "0.4:0.6", *CPU),
                       "--gc needs a DNA or RNA model")
    assert not (tmp_path / "g.fasta").exists()


def test_iupac_dna_is_inferred_as_dna_and_said(cli, tmp_path, tiny_train):
    rng = random.Random(3)
    seqs = random_dna(rng, 200)
    seqs[5] = "ACGTNRYKMSWACGTACGTACGTA"
    seqs[9] = "NNNNACGTACGTACGTACGTACGT"
    data = write_fasta(tmp_path / "dna.fasta", seqs)
    res = cli("train", "--data", data, "--out", tmp_path / "m", *tiny_train, "--unknown", "random", *CPU)
    assert res.code == 0, res.err
    assert "inferred alphabet dna (ACGT)" in res.err and "ambiguity codes" in res.err
    assert json.loads((tmp_path / "m" / "config.json").read_text())["alphabet"]["name"] == "dna"


def test_letters_of_no_alphabet_are_an_error_unless_custom(cli, tmp_path, tiny_train):
    data = tmp_path / "odd.fasta"
    data.write_text(">a\nACGT!?\n>b\nAC!?GT\n")
    assert_input_error(cli("train", "--data", data, "--out", tmp_path / "m", *tiny_train, *CPU), "--alphabet custom")
    assert not (tmp_path / "m").exists()
    one = tmp_path / "one.fasta"
    one.write_text(">a\nACGTXYZ\n")
    assert_input_error(cli("train", "--data", one, "--out", tmp_path / "m", *tiny_train, *CPU), "'X'")
    res = cli("train", "--data", data, "--out", tmp_path / "c", *tiny_train, "--alphabet", "custom", *CPU)
    assert res.code == 0, res.err
    assert json.loads((tmp_path / "c" / "config.json").read_text())["alphabet"] == {"name": "custom",
                                                                                "letters": "!?ACGT"}


@pytest.mark.parametrize("header", ["class==strong", "class=weak=strong"])
def test_malformed_header_exits_2(cli, tmp_path, tiny_train, header):
    rng = random.Random(1)
    seqs = random_dna(rng, 30)
    text = "".join(f">s{i} class={'a' if i % 2 else 'b'}\n{s}\n" for i, s in enumerate(seqs))
    text = text.replace(">s7 class=a", f">s7 {header}")
    (tmp_path / "h.fasta").write_text(text)
    line = assert_input_error(cli("train", "--data", tmp_path / "h.fasta", "--out", tmp_path / "m", *tiny_train,
                                  "--label-key", "class", *CPU), "malformed annotation")
    assert "s7" in line


def test_labels_from_files(cli, tmp_path, tiny_train):
    rng = random.Random(2)
    strong = write_fasta(tmp_path / "strong.fa", random_dna(rng, 25))
    weak = write_fasta(tmp_path / "weak.fa", random_dna(rng, 25))
    res = cli("train", "--data", f"strong={strong}", f"weak={weak}", "--out", tmp_path / "m", *tiny_train, *CPU)
    assert res.code == 0, res.err
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["classes"] == ["strong", "weak"] and cfg["label_key"] == "class"
    assert_input_error(cli("train", "--data", f"strong={strong}", str(weak), "--out", tmp_path / "n", *tiny_train,
                           *CPU), "label")


def test_sequence_column(cli, tmp_path, tiny_train):
    rng = random.Random(4)
    rows = "".join(f"r{i}\t{s}\t{i % 2}\n" for i, s in enumerate(random_dna(rng, 30)))
    (tmp_path / "t.tsv").write_text("id\tseq_dna\tgroup\n" + rows)
    res = cli("train", "--data", tmp_path / "t.tsv", "--sequence-column", "seq_dna", "--label-key", "group",
              "--out", tmp_path / "m", *tiny_train, *CPU)
    assert res.code == 0, res.err
    assert json.loads((tmp_path / "m" / "config.json").read_text())["classes"] == ["0", "1"]
