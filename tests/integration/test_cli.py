"""End-to-end tests of the ``ddsm`` command line: train, sample, score, list, and bad input.

All but one test call ``ddsm.cli.main`` in-process; ``test_real_entry_point_*`` runs
``python -m ddsm`` in a subprocess. Bad input must always give exit code 2, exactly one stderr line
``ddsm: error: ...``, no traceback, and leave no (partial) output behind.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SEQ_LEN = 24  # of the sequences in the conftest fixtures
CPU = ["--quiet", "--device", "cpu"]


def random_dna(rng: random.Random, n: int, length: int = SEQ_LEN) -> list[str]:
    return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(n)]


def write_fasta(path: Path, seqs: list[str]) -> Path:
    path.write_text("".join(f">seq{i}\n{s}\n" for i, s in enumerate(seqs)))
    return path


def read_fasta_simple(path: Path) -> list[tuple[str, str]]:
    """``(header without '>', sequence)`` pairs; deliberately independent of ddsm's reader."""
    records: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            records.append((line[1:], ""))
        elif line.strip():
            header, seq = records[-1]
            records[-1] = (header, seq + line.strip())
    return records


def assert_input_error(res, pattern: str | None = None) -> str:
    """Exit code 2, exactly one stderr line ``ddsm: error: ...`` (matching ``pattern``), no
    traceback, nothing on stdout; returns the line."""
    assert res.code == 2, f"exit code {res.code}, stderr: {res.err!r}"
    assert "Traceback" not in res.err and "Traceback" not in res.out
    lines = res.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {res.err!r}"
    assert lines[0].startswith("ddsm: error: "), lines[0]
    assert res.out == "", f"unexpected stdout on error: {res.out!r}"
    if pattern is not None:
        assert re.search(pattern, lines[0], re.IGNORECASE), f"{pattern!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (hidden temporaries included) with its bytes (None = folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error path")


def header_fields(header: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in header.split()[1:] if "=" in w)


def read_tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    cols = lines[0].split("\t")
    return [dict(zip(cols, line.split("\t"))) for line in lines[1:]]


def sample_args(model: Path, out: Path, *extra: str, n: int = 10, seed: int = 3) -> list:
    return ["sample", model, "-n", str(n), "-o", out, "--steps", "5", "--seed", str(seed), *extra, *CPU]


# ============================================================================ happy paths
def test_train_writes_checkpoint(trained_model):
    for name in ("config.json", "model.safetensors", "history.json"):
        assert (trained_model / name).is_file(), name
    cfg = json.loads((trained_model / "config.json").read_text())
    assert cfg["step"] == 20
    assert cfg["process"]["name"] == "jacobi"
    assert cfg["model"]["name"] == "mlp" and cfg["model"]["options"]["hidden"] == 16
    assert cfg["seq_len"] == SEQ_LEN
    assert cfg["command"].startswith("ddsm train ")  # the argv given to main, not pytest's
    history = json.loads((trained_model / "history.json").read_text())
    assert isinstance(history, list) and history and history[-1]["step"] == 20
    assert all(math.isfinite(h["train_loss"]) for h in history)


@pytest.fixture(scope="module")
def seed3_sample(trained_model, tmp_path_factory):
    """(first, second) FASTA written by two identical ``sample --seed 3`` runs."""
    from ddsm.cli import main

    d = tmp_path_factory.mktemp("sample3")
    # one run name: ids are NAME_i, by default from the output file's name
    assert main([str(a) for a in sample_args(trained_model, d / "a.fasta", "--name", "s3")]) == 0
    assert main([str(a) for a in sample_args(trained_model, d / "b.fasta", "--name", "s3")]) == 0
    return d / "a.fasta", d / "b.fasta"


def test_sample_writes_valid_fasta(seed3_sample):
    records = read_fasta_simple(seed3_sample[0])
    assert len(records) == 10
    assert len({h.split()[0] for h, _ in records}) == 10  # unique ids
    for header, seq in records:
        assert len(seq) == SEQ_LEN
        assert set(seq) <= set("ACGT"), seq
        meta = header_fields(header)
        assert meta["seed"] == "3" and meta["steps"] == "5" and meta["process"] == "jacobi", header
        assert meta["model"] == "ckpt"


def test_sample_same_seed_is_byte_identical(seed3_sample):
    a, b = seed3_sample
    assert a.read_bytes() == b.read_bytes()


def test_sample_other_seed_differs(cli, trained_model, seed3_sample, tmp_path):
    res = cli(*sample_args(trained_model, tmp_path / "c.fasta", seed=4))
    assert res.code == 0, res.err
    assert re.search(r"wrote 10\b", res.out), res.out
    seqs3 = [s for _, s in read_fasta_simple(seed3_sample[0])]
    seqs4 = [s for _, s in read_fasta_simple(tmp_path / "c.fasta")]
    assert len(seqs4) == 10 and seqs3 != seqs4
    assert all(header_fields(h)["seed"] == "4" for h, _ in read_fasta_simple(tmp_path / "c.fasta"))


def test_score_writes_one_row_per_sequence(cli, trained_model, data_dir, tmp_path):
    out = tmp_path / "s.tsv"
    # 20 ODE steps: with 5 the (stochastic, discretised) bound can fall below zero per sequence
    res = cli("score", trained_model, data_dir / "seqs.fasta", "-o", out, "--steps", "20", *CPU)
    assert res.code == 0, res.err
    rows = read_tsv(out)
    assert [r["id"] for r in rows] == [f"query{i}" for i in range(10)]
    for r in rows:
        bits = float(r["bits_per_token"])
        assert math.isfinite(bits) and bits > 0, r
        assert r["length"] == str(SEQ_LEN) and r["process"] == "jacobi" and r["steps"] == "20"


def test_score_steps5_runs(cli, trained_model, data_dir, tmp_path):
    out = tmp_path / "s.tsv"
    res = cli("score", trained_model, data_dir / "seqs.fasta", "-o", out, "--steps", "5", *CPU)
    assert res.code == 0, res.err
    rows = read_tsv(out)
    assert len(rows) == 10 and all(math.isfinite(float(r["bits_per_token"])) for r in rows)
    assert "bits/token" in res.out


def test_fixed_pattern_is_kept(cli, trained_model, tmp_path):
    pattern = "ACGTTG" + "N" * (SEQ_LEN - 12) + "GATTAC"
    out = tmp_path / "fixed.fasta"
    res = cli(*sample_args(trained_model, out, "--fixed", pattern.lower(), n=6))
    assert res.code == 0, res.err
    records = read_fasta_simple(out)
    assert len(records) == 6
    for _, seq in records:
        assert len(seq) == SEQ_LEN
        for i, ch in enumerate(pattern):
            if ch != "N":
                assert seq[i] == ch, (i, seq)


def test_fixed_pattern_from_file(cli, trained_model, tmp_path):
    pattern = "T" * 4 + "N" * (SEQ_LEN - 4)
    pfile = tmp_path / "pattern.txt"
    pfile.write_text(pattern[:10] + "\n" + pattern[10:] + "\n")
    res = cli(*sample_args(trained_model, tmp_path / "f.fasta", "--fixed", pfile, n=2))
    assert res.code == 0, res.err
    assert all(seq.startswith("TTTT") for _, seq in read_fasta_simple(tmp_path / "f.fasta"))


def test_time_dilation(cli, trained_model, tmp_path):
    out = tmp_path / "dil.fasta"
    res = cli(*sample_args(trained_model, out, "--time-dilation", "2", n=4))
    assert res.code == 0, res.err
    records = read_fasta_simple(out)
    assert len(records) == 4 and all(len(s) == SEQ_LEN and set(s) <= set("ACGT") for _, s in records)
    assert all(header_fields(h)["dilation"] == "2" for h, _ in records)


def test_list_processes_and_models(cli):
    res = cli("list", "processes")
    assert res.code == 0 and res.err == ""
    names = {line.split()[0] for line in res.out.splitlines() if line and not line[0].isspace()}
    assert "jacobi" in names
    res = cli("list", "models")
    assert res.code == 0
    assert {"mlp", "conv"} <= {line.split()[0] for line in res.out.splitlines() if line.strip()}


def test_resume_continues_to_new_step_count(cli, trained_model, data_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_model, ckpt)
    # only the new step count: model, batch size and seed come from the saved run
    # ... and a cooldown over the new steps (warm-up, stable, decay)
    res = cli("train", "--data", data_dir / "train.fasta", "--out", ckpt, "--resume", "--steps", "30",
              "--cooldown-steps", "10", *CPU)
    assert res.code == 0, res.err
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["step"] == 30 and cfg["train"]["steps"] == 30 and cfg["train"]["cooldown_steps"] == 10
    assert cfg["model"]["name"] == "mlp" and cfg["model"]["options"]["hidden"] == 16
    history = json.loads((ckpt / "history.json").read_text())
    assert [h["step"] for h in history][-2:] == [20, 30]
    # the last of 10 cooldown steps (times the warm-up factor where the run is still warming up)
    warm = min(1.0, 30 / cfg["train"]["warmup_steps"]) if cfg["train"]["warmup_steps"] else 1.0
    assert history[-1]["lr"] == pytest.approx(cfg["train"]["lr"] / 10 * warm)


def test_output_exists_force_replaces(cli, trained_model, tmp_path):
    out = tmp_path / "out.fasta"
    out.write_text("keep me\n")
    assert_input_error(cli(*sample_args(trained_model, out, n=2)), r"exists.*--force")
    assert out.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fasta"]
    res = cli(*sample_args(trained_model, out, "--force", n=2))
    assert res.code == 0, res.err
    assert len(read_fasta_simple(out)) == 2


# ============================================================================ bad input: train
@pytest.fixture
def train_in(cli, data_dir, tmp_path, tiny_train):
    """``train_in(*extra, data=...)``: a train run into tmp_path/out that must fail; checks that
    nothing was written anywhere under tmp_path."""

    def run(*extra, data=None, pattern=None):
        before = snapshot(tmp_path)
        res = cli("train", "--data", data or data_dir / "train.fasta", "--out", tmp_path / "out",
                  *tiny_train, *extra, *CPU)
        line = assert_input_error(res, pattern)
        assert snapshot(tmp_path) == before
        assert not (tmp_path / "out").exists()
        return line

    return run


def test_train_missing_data_file(train_in, tmp_path):
    train_in(data=tmp_path / "nope.fasta", pattern="no such file")


def test_train_empty_fasta(train_in, tmp_path):
    (tmp_path / "empty.fasta").write_text("")
    train_in(data=tmp_path / "empty.fasta", pattern="empty")


def test_train_letter_outside_alphabet(train_in, tmp_path):
    seqs = random_dna(random.Random(1), 10)
    seqs[3] = "ACGTX" + seqs[3][5:]
    write_fasta(tmp_path / "x.fasta", seqs)
    line = train_in("--alphabet", "dna", data=tmp_path / "x.fasta", pattern="'X'")
    assert "position 5" in line


def test_train_mixed_lengths(train_in, tmp_path):
    write_fasta(tmp_path / "mixed.fasta", ["ACGTACGTAC", "ACGTACGTACGT", "ACGTAC"])
    train_in(data=tmp_path / "mixed.fasta", pattern="--length")


def test_train_unknown_process(train_in):
    train_in("--process", "no-such-process", pattern="unknown process 'no-such-process'.*jacobi")


@pytest.mark.parametrize("text, pattern", [
    ('{"train": {"steps": 5,}', "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"process": "jacobi"}', "'process' must be a JSON object"),
    ('{"model": {"options": [1]}}', "options must be a JSON object"),
    ('{"train": {"no_such_key": 1}}', "no_such_key"),
])
def test_train_bad_config(train_in, tmp_path, text, pattern):
    (tmp_path / "cfg.json").write_text(text)
    train_in("--config", tmp_path / "cfg.json", pattern=pattern)


def test_train_missing_config_file(train_in, tmp_path):
    train_in("--config", tmp_path / "none.json", pattern="not found")


@pytest.mark.parametrize("option", ["--set-model", "--set-process"])
def test_train_bad_option_value(train_in, option):
    train_in(option, "hidden=abc" if option == "--set-model" else "T=abc", pattern="bad process/model option")


def test_train_negative_process_time(train_in):
    train_in("--set-process", "T=-1", pattern="T")


def test_train_steps_zero(train_in):
    train_in("--steps", "0", pattern="--steps must be at least 1")


def test_train_out_below_a_file(cli, data_dir, tmp_path, tiny_train):
    (tmp_path / "afile").write_text("x")
    res = cli("train", "--data", data_dir / "train.fasta", "--out", tmp_path / "afile" / "ckpt", *tiny_train, *CPU)
    assert_input_error(res, "not a folder")
    assert (tmp_path / "afile").read_text() == "x"


def test_train_out_holds_checkpoint(cli, trained_model, data_dir, tiny_train):
    before = snapshot(trained_model)
    res = cli("train", "--data", data_dir / "train.fasta", "--out", trained_model, *tiny_train, *CPU)
    assert_input_error(res, "--resume.*--force")
    assert snapshot(trained_model) == before


def test_train_resume_without_checkpoint(train_in, tmp_path):
    train_in("--resume", pattern="holds no checkpoint")


@needs_no_cuda
def test_train_device_cuda_without_cuda(cli, data_dir, tmp_path, tiny_train):
    res = cli("train", "--data", data_dir / "train.fasta", "--out", tmp_path / "out", *tiny_train,
              "--quiet", "--device", "cuda")
    assert_input_error(res, "cuda")
    assert not (tmp_path / "out").exists()


# ============================================================================ bad input: sample / score
@pytest.fixture(params=["sample", "score"])
def model_cmd(request, data_dir):
    """``model_cmd(model, out, *extra)``: argv of a quick sample or score run."""

    def build(model, out, *extra):
        if request.param == "sample":
            return ["sample", model, "-n", "2", "--steps", "2", "-o", out, *extra, *CPU]
        return ["score", model, data_dir / "seqs.fasta", "--steps", "2", "-o", out, *extra, *CPU]

    build.command = request.param
    return build


def expect_error_no_output(cli, tmp_path, argv, pattern=None) -> str:
    before = snapshot(tmp_path)
    line = assert_input_error(cli(*argv), pattern)
    assert snapshot(tmp_path) == before, "a failed command changed or left files"
    return line


def test_output_folder_missing(cli, model_cmd, trained_model, tmp_path):
    expect_error_no_output(cli, tmp_path, model_cmd(trained_model, tmp_path / "nope" / "out.txt"), "does not exist")


@pytest.mark.parametrize("force", [False, True])
def test_output_is_a_directory(cli, model_cmd, trained_model, tmp_path, force):
    (tmp_path / "adir").mkdir()
    extra = ["--force"] if force else []
    expect_error_no_output(cli, tmp_path, model_cmd(trained_model, tmp_path / "adir", *extra), "directory")


def test_output_exists_without_force(cli, model_cmd, trained_model, tmp_path):
    (tmp_path / "out.txt").write_text("precious\n")
    expect_error_no_output(cli, tmp_path, model_cmd(trained_model, tmp_path / "out.txt"), "--force")


def test_model_not_a_checkpoint_dir(cli, model_cmd, tmp_path):
    (tmp_path / "notckpt").mkdir()
    (tmp_path / "notckpt" / "readme.txt").write_text("hi")
    expect_error_no_output(cli, tmp_path, model_cmd(tmp_path / "notckpt", tmp_path / "out.txt"),
                           "not a ddsm checkpoint")


def test_model_is_a_pt_file(cli, model_cmd, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 not really a pickle")
    expect_error_no_output(cli, tmp_path, model_cmd(tmp_path / "model.pt", tmp_path / "out.txt"), "pickle")


def test_model_missing(cli, model_cmd, tmp_path):
    expect_error_no_output(cli, tmp_path, model_cmd(tmp_path / "nothing", tmp_path / "out.txt"), "does not exist")


@pytest.mark.parametrize("edit, pattern", [
    (lambda c: c["model"].update(name="nosuch"), "unknown model 'nosuch'"),
    (lambda c: c["process"]["options"].update(bogus=1), "invalid process/model options"),
    (lambda c: c.pop("alphabet"), "lacks alphabet"),
    # hand edits of fields the weights imply: refused, naming the field
    (lambda c: c.update(seq_len=300), "field 'seq_len' is 300 but the weights were trained with 24"),
    (lambda c: c.update(classes=["a", "b"]), "field 'classes'"),
    (lambda c: c.update(alphabet={"name": "custom", "letters": "ACGU"}), "field 'alphabet'"),
])
def test_model_with_damaged_config(cli, model_cmd, trained_model, tmp_path, edit, pattern):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_model, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    edit(cfg)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    expect_error_no_output(cli, tmp_path, model_cmd(ckpt, tmp_path / "out.txt"), pattern)


def test_old_checkpoint_structural_checks(cli, model_cmd, trained_model, tmp_path):
    """Without the record in the weights (checkpoints saved before it), classes and alphabet
    size are still checked against the network."""
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_model, ckpt)
    save_file(load_file(str(ckpt / "model.safetensors")), str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((ckpt / "config.json").read_text())
    assert main_ok(cli, model_cmd(ckpt, tmp_path / "ok.txt"))
    cfg["classes"] = ["a", "b", "c"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    expect_error_no_output(cli, tmp_path, model_cmd(ckpt, tmp_path / "out.txt"), "lists 3 classes but the network")
    cfg["classes"] = []
    cfg["alphabet"] = {"name": "protein", "letters": "ACDEFGHIKLMNPQRSTVWY"}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    expect_error_no_output(cli, tmp_path, model_cmd(ckpt, tmp_path / "out.txt"), "20 letters but the process models 4")


def main_ok(cli, argv) -> bool:
    res = cli(*argv)
    assert res.code == 0, res.err
    return True


@pytest.mark.parametrize("extra, pattern", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_numbers(cli, model_cmd, trained_model, tmp_path, extra, pattern):
    expect_error_no_output(cli, tmp_path, model_cmd(trained_model, tmp_path / "out.txt", *extra), pattern)


@needs_no_cuda
def test_device_cuda_without_cuda(cli, model_cmd, trained_model, tmp_path):
    argv = model_cmd(trained_model, tmp_path / "out.txt")[:-1] + ["cuda"]  # CPU ends with "cpu"
    expect_error_no_output(cli, tmp_path, argv, "cuda")


@pytest.mark.parametrize("extra, pattern", [
    (["-n", "0"], "-n must be at least 1"),
    (["--time-dilation", "0.5"], "--time-dilation"),
    (["--time-dilation", "nan"], "--time-dilation"),
    (["--fixed", "ACGT"], "length 4.*length 24"),
    (["--fixed", "ACGTZ" + "N" * (SEQ_LEN - 5)], "'Z' at position 5"),
    (["--class", "K562"], "without class labels"),
])
def test_sample_bad_options(cli, trained_model, tmp_path, extra, pattern):
    argv = ["sample", trained_model, "-n", "2", "--steps", "2", "-o", tmp_path / "out.fasta", *extra, *CPU]
    expect_error_no_output(cli, tmp_path, argv, pattern)


def test_score_t_start_is_used_and_recorded(cli, trained_model, data_dir, tmp_path):
    out = tmp_path / "s.tsv"
    res = cli("score", trained_model, data_dir / "seqs.fasta", "-o", out, "--steps", "20", "--t-start", "1.0", *CPU)
    assert res.code == 0, res.err
    rows = read_tsv(out)
    assert len(rows) == 10 and all(r["t_start"] == "1.0" for r in rows)
    assert all(math.isfinite(float(r["bits_per_token"])) for r in rows)


@pytest.mark.parametrize("bad", ["0", "-1", "10", "1e9"])
def test_score_t_start_out_of_range(cli, trained_model, data_dir, tmp_path, bad):
    argv = ["score", trained_model, data_dir / "seqs.fasta", "-o", tmp_path / "s.tsv", "--steps", "2",
            f"--t-start={bad}", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "--t-start")


def test_score_t_start_refused_for_other_processes(cli, data_dir, tmp_path):
    out = tmp_path / "masked"
    res = cli("train", "--data", data_dir / "train.fasta", "--out", out, "--process", "masked", "--model", "mlp",
              "--set-model", "hidden=8", "--steps", "3", "--batch-size", "8", *CPU)
    assert res.code == 0, res.err
    argv = ["score", out, data_dir / "seqs.fasta", "-o", tmp_path / "s.tsv", "--steps", "2", "--t-start", "1", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "--t-start applies to the jacobi process")
    argv = ["score", out, data_dir / "seqs.fasta", "-o", tmp_path / "s.tsv", "--steps", "2", "--bound", "sde", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "--bound 'sde' is not offered by this 'masked' model")


def test_score_sde_bound_is_used_and_recorded(cli, trained_model, data_dir, tmp_path):
    out = tmp_path / "s.tsv"
    res = cli("score", trained_model, data_dir / "seqs.fasta", "-o", out, "--steps", "20", "--bound", "sde", *CPU)
    assert res.code == 0, res.err
    rows = read_tsv(out)
    assert len(rows) == 10 and all(r["bound"] == "sde" for r in rows)
    assert all(math.isfinite(float(r["bits_per_token"])) and float(r["bits_per_token"]) > 0 for r in rows)
    side = json.loads((tmp_path / "s.tsv.json").read_text())
    assert side["settings"]["bound"] == "sde" and side["argv"][-2:] == ["--bound", "sde"]
    argv = ["score", trained_model, data_dir / "seqs.fasta", "-o", tmp_path / "t.tsv", "--steps", "2", "--bound", "sde",
            "--t-start", "1", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "--t-start applies to the ODE bound only")


def test_score_wrong_length(cli, trained_model, tmp_path):
    rng = random.Random(2)
    write_fasta(tmp_path / "long.fasta", random_dna(rng, 5, SEQ_LEN + 6))
    argv = ["score", trained_model, tmp_path / "long.fasta", "-o", tmp_path / "s.tsv", "--steps", "2", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "length 30.*length 24")


def test_score_bad_letter(cli, trained_model, tmp_path):
    write_fasta(tmp_path / "bad.fasta", ["ACGTX" + "A" * (SEQ_LEN - 5)])
    argv = ["score", trained_model, tmp_path / "bad.fasta", "-o", tmp_path / "s.tsv", "--steps", "2", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "'X'")


def test_score_repeats_zero(cli, trained_model, data_dir, tmp_path):
    argv = ["score", trained_model, data_dir / "seqs.fasta", "-o", tmp_path / "s.tsv", "--repeats", "0", *CPU]
    expect_error_no_output(cli, tmp_path, argv, "--repeats")


# ============================================================================ the real entry point
def test_real_entry_point_reports_one_line(tmp_path, data_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "ddsm", "train", "--data", str(tmp_path / "missing.fasta"),
         "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddsm: error: "), proc.stderr
    assert "missing.fasta" in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()
