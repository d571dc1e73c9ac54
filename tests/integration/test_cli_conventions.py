"""CLI conventions: help lines and defaults everywhere, --version, list models, flag-correct hints."""

from __future__ import annotations

import argparse

import pytest
from test_cli import assert_input_error

from conftest import CPU, random_dna, write_fasta
from ddsm.cli import build_parser


def _parsers(p: argparse.ArgumentParser, name: str = "ddsm"):
    yield name, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for n, sp in a.choices.items():
                yield from _parsers(sp, f"{name} {n}")


def test_every_option_has_help_and_its_default_is_shown():
    for name, p in _parsers(build_parser()):
        assert p.formatter_class is argparse.ArgumentDefaultsHelpFormatter, name
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            assert a.help, f"{name} {a.option_strings or a.dest} has no help line"
    text = next(p for n, p in _parsers(build_parser()) if n == "ddsm sample").format_help()
    assert "(default: 100)" in text and "(default: 64)" in text  # -n and --batch-size


def test_version_text(capsys):
    from ddsm.checkpoint import ddsm_version

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"ddsm {ddsm_version()}"


def test_list_models_shows_bundled_models_and_backbones(cli):
    res = cli("list", "models")
    assert res.code == 0
    assert "dhs4" in res.out and "cell_type" in res.out and "K562" in res.out and "200 letters" in res.out
    assert "epd_promoters" in res.out and "300 letters" in res.out
    assert "conv" in res.out and "transformer" in res.out
    only = cli("list", "backbones")
    assert "conv" in only.out and "dhs4" not in only.out


def test_score_hint_names_score_flags(cli, trained_model, tmp_path):
    import random

    rng = random.Random(0)
    seqs = random_dna(rng, 3) + random_dna(rng, 2, length=30)
    data = write_fasta(tmp_path / "mixed.fa", seqs)
    line = assert_input_error(cli("score", trained_model, data, "-o", tmp_path / "s.tsv", *CPU), "--crop")
    assert "--length" not in line
    (tmp_path / "n.fa").write_text(">a\n" + "ACGTN" * 4 + "ACGT\n")
    line = assert_input_error(cli("score", trained_model, tmp_path / "n.fa", "-o", tmp_path / "s.tsv", *CPU),
                              "--unknown random")
    assert "--alphabet" not in line
