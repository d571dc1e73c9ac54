"""``ddsm sample --sampler``: passed to ``design`` only when given, recorded in headers, argv and sidecar."""

from __future__ import annotations

import json
from typing import Any, Optional

from conftest import CPU
from test_cli import assert_input_error

import ddsm.api


def _design_with_sampler(monkeypatch) -> list[Optional[str]]:
    """Give ``design`` a ``sampler`` keyword (recorded, then dropped) if it has none yet."""
    import inspect

    seen: list[Optional[str]] = []
    real = ddsm.api.design
    if "sampler" in inspect.signature(real).parameters:
        def design(*a: Any, sampler: Optional[str] = None, **kw: Any):
            seen.append(sampler)
            return real(*a, sampler=sampler, **kw)
    else:
        def design(*a: Any, sampler: Optional[str] = None, **kw: Any):
            seen.append(sampler)
            return real(*a, **kw)
    monkeypatch.setattr(ddsm.api, "design", design)
    return seen


def test_sampler_recorded(cli, trained_model, tmp_path, monkeypatch):
    seen = _design_with_sampler(monkeypatch)
    out = tmp_path / "d.fasta"
    res = cli("sample", trained_model, "-n", "2", "-o", out, "--steps", "3", "--sampler", "ancestral", *CPU)
    assert res.code == 0, res.err
    assert seen == ["ancestral"]
    headers = [line for line in out.read_text().splitlines() if line.startswith(">")]
    assert headers and all("sampler=ancestral" in h for h in headers)
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    assert side["settings"]["sampler"] == "ancestral"
    i = side["argv"].index("--sampler")
    assert side["argv"][i + 1] == "ancestral"


def test_no_sampler_leaves_outputs_as_before(cli, trained_model, tmp_path, monkeypatch):
    seen = _design_with_sampler(monkeypatch)
    out = tmp_path / "d.fasta"
    assert cli("sample", trained_model, "-n", "2", "-o", out, "--steps", "3", *CPU).code == 0
    assert seen == [None]
    assert "sampler" not in out.read_text()
    side = json.loads((tmp_path / "d.fasta.json").read_text())
    assert "sampler" not in side["settings"] and "--sampler" not in side["argv"]


def test_bad_sampler_is_one_error_line(cli, trained_model, tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:  # argparse choices
        cli("sample", trained_model, "-n", "2", "-o", tmp_path / "d.fasta", "--sampler", "euler", *CPU)
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_sampler_without_design_support_is_an_input_error(cli, trained_model, tmp_path, monkeypatch):
    def design(run: Any, n: int, **kw: Any):  # a design() without the keyword
        raise AssertionError("not reached")

    monkeypatch.setattr(ddsm.api, "design", design)
    res = cli("sample", trained_model, "-n", "2", "-o", tmp_path / "d.fasta", "--sampler", "first-hitting", *CPU)
    assert_input_error(res, "--sampler")
