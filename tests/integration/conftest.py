"""Shared fixtures for the CLI integration tests: tiny FASTA files and one tiny trained model.

Everything runs in-process through ``ddsm.cli.main`` on the CPU; the model is trained once per
session (an MLP with 16 hidden units, 20 steps on 40 random 24-bp sequences) and reused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from ddsm.cli import main

SEQ_LEN = 24
#: flags that keep every command quiet and on the CPU
CPU = ["--quiet", "--device", "cpu"]
#: the tiny model every test reuses (train options)
TINY_TRAIN = ["--model", "mlp", "--set-model", "hidden=16", "--steps", "20", "--batch-size", "8"]


def random_dna(rng: random.Random, n: int, length: int = SEQ_LEN) -> list[str]:
    return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(n)]


def write_fasta(path: Path, seqs: list[str], prefix: str = "seq") -> Path:
    path.write_text("".join(f">{prefix}{i}\n{s}\n" for i, s in enumerate(seqs)))
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """``cli(*argv)`` runs ``ddsm.cli.main(argv)`` in-process and captures stdout/stderr."""

    def run(*argv: str | Path) -> CliResult:
        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_train() -> list[str]:
    """train options of the tiny model (for tests that train or resume)."""
    return list(TINY_TRAIN)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """``train.fasta`` (40 x 24 bp) and ``seqs.fasta`` (10 other 24-bp sequences)."""
    d = tmp_path_factory.mktemp("data")
    rng = random.Random(20240601)
    write_fasta(d / "train.fasta", random_dna(rng, 40))
    write_fasta(d / "seqs.fasta", random_dna(rng, 10), prefix="query")
    return d


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, data_dir) -> Path:
    """One tiny jacobi/mlp checkpoint, trained once for the whole session (treat as read-only)."""
    out = tmp_path_factory.mktemp("model") / "ckpt"
    code = main(["train", "--data", str(data_dir / "train.fasta"), "--out", str(out), *TINY_TRAIN, *CPU])
    assert code == 0
    return out
