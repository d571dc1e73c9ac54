"""Provenance and labelled outputs: sidecar JSON round trip, --class all, unique ids, labels in score TSV."""

from __future__ import annotations

import json
import random

import pytest
from test_cli import assert_input_error, read_fasta_simple, read_tsv

from conftest import CPU, TINY_TRAIN, random_dna
from ddsm.cli import main


@pytest.fixture(scope="module")
def labelled_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    rng = random.Random(11)
    (d / "a.fa").write_text("".join(f">a{i}\n{s}\n" for i, s in enumerate(random_dna(rng, 20))))
    (d / "b.fa").write_text("".join(f">b{i}\n{s}\n" for i, s in enumerate(random_dna(rng, 20))))
    out = d / "m"
    assert main(["train", "--data", f"up={d / 'a.fa'}", f"down={d / 'b.fa'}", "--out", str(out), *TINY_TRAIN,
                 *CPU]) == 0
    return out


def test_class_all_and_ids_and_sidecar_round_trip(cli, labelled_model, tmp_path):
    out = tmp_path / "designs.fasta"
    res = cli("sample", labelled_model, "-n", "3", "-o", out, "--class", "all", "--steps", "3", "--seed", "5",
              "--forbid", "GAATTC", "--guidance", "1.5", *CPU)
    assert res.code == 0, res.err
    recs = read_fasta_simple(out)
    ids = [h.split()[0] for h, _ in recs]
    assert ids == [f"designs_{i}" for i in range(6)]
    assert [dict(w.split("=", 1) for w in h.split()[1:])["class"] for h, _ in recs] == ["down"] * 3 + ["up"] * 3
    side = json.loads((tmp_path / "designs.fasta.json").read_text())
    assert side["settings"]["seed"] == 5 and side["settings"]["classes"] == ["down", "up"]
    assert side["settings"]["constraints"]["forbid"] == ["GAATTC"]
    assert side["settings"]["batch_size"] == 64 and side["settings"]["guidance"] == 1.5
    assert len(side["model"]["sha256"]) == 64 and [d["id"] for d in side["designs"]] == ids
    # re-running the recorded settings reproduces the file byte for byte
    again = tmp_path / "again"
    again.mkdir()
    argv = list(side["argv"])
    argv[argv.index("-o") + 1] = str(again / "designs.fasta")
    assert main([*argv, "--quiet"]) == 0
    assert (again / "designs.fasta").read_bytes() == out.read_bytes()


def test_class_list_and_bad_class(cli, labelled_model, tmp_path):
    res = cli("sample", labelled_model, "-n", "2", "-o", tmp_path / "x.fa", "--class", "up,down", "--steps", "2", *CPU)
    assert res.code == 0, res.err
    assert len(read_fasta_simple(tmp_path / "x.fa")) == 4
    assert_input_error(cli("sample", labelled_model, "-n", "2", "-o", tmp_path / "y.fa", "--class", "up,left",
                           "--steps", "2", *CPU), "unknown class 'left'")
    assert not (tmp_path / "y.fa").exists() and not (tmp_path / "y.fa.json").exists()


def test_sidecar_is_not_overwritten_without_force(cli, labelled_model, tmp_path):
    (tmp_path / "z.fa.json").write_text("precious")
    assert_input_error(cli("sample", labelled_model, "-n", "1", "-o", tmp_path / "z.fa", "--steps", "2", *CPU),
                       "--force")
    assert (tmp_path / "z.fa.json").read_text() == "precious" and not (tmp_path / "z.fa").exists()


def test_score_tsv_carries_labels(cli, labelled_model, tmp_path):
    out = tmp_path / "d.fa"
    assert cli("sample", labelled_model, "-n", "2", "-o", out, "--class", "all", "--steps", "2", *CPU).code == 0
    res = cli("score", labelled_model, out, "-o", tmp_path / "s.tsv", "--steps", "2", *CPU)
    assert res.code == 0, res.err
    rows = read_tsv(tmp_path / "s.tsv")
    assert [r["class"] for r in rows] == ["down", "down", "up", "up"]
    assert all(r["length"] == "24" for r in rows)
    side = json.loads((tmp_path / "s.tsv.json").read_text())
    assert side["command"] == "score" and side["settings"]["steps"] == 2 and len(side["input"]["sha256"]) == 64
    again = list(side["argv"])
    again[again.index("-o") + 1] = str(tmp_path / "s2.tsv")
    assert main([*again, "--quiet"]) == 0
    assert (tmp_path / "s2.tsv").read_bytes() == (tmp_path / "s.tsv").read_bytes()
