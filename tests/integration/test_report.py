"""``ddsm evaluate`` end to end: table, JSON and the HTML report, rendered in headless Chromium."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from ddsm.cli.evaluate import add_parser as add_evaluate_parser
from ddsm.data import Record, write_fasta
from ddsm.errors import DDSMInputError

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def _dna(rng, n, length, p=None, motif=None):
    out = []
    for _ in range(n):
        s = "".join(rng.choice(list("ACGT"), length, p=p))
        if motif:
            s = s[:4] + motif + s[4 + len(motif):]
        out.append(s)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two classes of 24 bp: 'a' carries a TATAAA box, 'b' is GC-rich; designs are noisier copies."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    ref = ([Record(f"r_a{i}", s, {"cell_type": "a"}) for i, s in enumerate(_dna(rng, 40, 24, motif="TATAAA"))]
           + [Record(f"r_b{i}", s, {"cell_type": "b"})
              for i, s in enumerate(_dna(rng, 40, 24, p=[0.15, 0.35, 0.35, 0.15]))])
    des = ([Record(f"d_a{i}", s, {"class": "a"}) for i, s in enumerate(_dna(rng, 30, 24, motif="TATA"))]
           + [Record(f"d_b{i}", s, {"class": "b"}) for i, s in enumerate(_dna(rng, 30, 24))])
    write_fasta(root / "ref.fasta", ref)
    write_fasta(root / "designs.fasta", des)
    write_fasta(root / "train.fasta", ref[::2] + des[:3])  # three designs are "memorised"
    run = root / "run"
    run.mkdir()
    history = [{"step": s, "train_loss": 2.0 / (1 + s / 50),
                "valid_loss": (2.1 / (1 + s / 50) if s % 100 == 0 else None)} for s in range(0, 501, 20)]
    (run / "history.json").write_text(json.dumps(history))
    return root


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ddsm")
    add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def report(files, tmp_path_factory):
    out = files / "report.html"
    code = _run(["evaluate", str(files / "designs.fasta"), "--reference", str(files / "ref.fasta"),
                 "--label-key", "cell_type", "--train", str(files / "train.fasta"), "--oracle", "none",
                 "--json", str(files / "metrics.json"), "--report", str(out), "--run", str(files / "run"),
                 "--max-seqs", "30", "--quiet"])
    assert code == 0
    return out


def _decode_png(b64: str) -> np.ndarray:
    from PIL import Image

    raw = base64.b64decode(b64, validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(raw))
    img.load()
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _assert_not_blank(pixels: np.ndarray, what: str) -> None:
    # a blank (single-colour) image has zero variance; a figure has text, lines and filled areas
    assert pixels.std() > 5.0, f"{what} looks blank (pixel std {pixels.std():.2f})"
    non_white = (pixels.min(axis=2) < 200).mean()
    assert non_white > 0.005, f"{what}: only {non_white:.4f} of the pixels are not white"


def test_table_and_json(files, report, capsys):
    data = json.loads((files / "metrics.json").read_text())
    metrics = data["metrics"]
    assert set(metrics) == {"a", "b", "all"}
    assert metrics["a"]["n_designed"] == 30 and metrics["all"]["n_reference"] == 80
    assert metrics["a"]["memorised_frac"] == pytest.approx(0.1)  # 3 of the 30 'a' designs are in train
    assert metrics["all"]["oracle_target_frac"] is None
    assert 0.0 <= metrics["b"]["kmer3_js"] <= 1.0
    # the GC-poor 'b' designs are easy to tell from the GC-rich reference
    assert metrics["b"]["disc_auroc"] > 0.8
    assert data["settings"]["label_key"] == "cell_type"


def test_html_is_self_contained_with_non_blank_images(report):
    html = report.read_text()
    assert "<table>" in html and "kmer6_js" in html
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    # logos for both classes, k-mer scatter, GC histograms, motif bars, training curves
    assert len(srcs) == 6
    alts = re.findall(r'<img alt="([^"]+)"', html)
    assert {"sequence logo a", "sequence logo b", "k-mer scatter", "GC histograms", "motif enrichment",
            "training curves"} == set(alts)
    for alt, src in zip(alts, srcs):
        assert src.startswith("data:image/png;base64,"), alt
        _assert_not_blank(_decode_png(src.split(",", 1)[1]), alt)
    # nothing is loaded from outside the file
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//|file:)', html)
    assert "<script" not in html and "<link" not in html


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium')")
    shot = tmp_path / "page.png"
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1200,3000", report.resolve().as_uri()]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish the screenshot within 90 s")
    assert shot.is_file(), f"no screenshot; chromium exit {proc.returncode}: {proc.stderr[-2000:]}"
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (3000, 1200)
    _assert_not_blank(pixels, "chromium screenshot")
    # the embedded figures fill much of the page: coloured (non-grey) pixels from logos and plots
    colourful = (pixels.max(axis=2) - pixels.min(axis=2) > 60).mean()
    assert colourful > 0.01, f"screenshot has few coloured pixels ({colourful:.4f}); were the images drawn?"


def test_existing_outputs_are_refused_without_force(files, report):
    with pytest.raises(DDSMInputError, match="exists; use --force"):
        _run(["evaluate", str(files / "designs.fasta"), "--reference", str(files / "ref.fasta"),
              "--report", str(report)])
    with pytest.raises(DDSMInputError, match="no history.json"):
        _run(["evaluate", str(files / "designs.fasta"), "--reference", str(files / "ref.fasta"), "--no-motifs",
              "--report", str(files / "other.html"), "--run", str(files), "--oracle", "none"])
    with pytest.raises(DDSMInputError, match="no such file"):
        _run(["evaluate", str(files / "missing.fasta"), "--reference", str(files / "ref.fasta")])


def test_cli_main_wiring(files, capsys):
    from ddsm import cli

    parser = cli.build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "evaluate" not in choices:
        pytest.skip("ddsm evaluate is not wired into ddsm.cli yet")
    code = cli.main(["evaluate", str(files / "designs.fasta"), "--reference", str(files / "ref.fasta"),
                     "--label-key", "cell_type", "--no-motifs", "--oracle", "none", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "disc_auroc" in out and "all" in out
    assert cli.main(["evaluate", str(files / "designs.fasta"), "--reference", str(files / "ref.fasta"),
                     "--label-key", "nope", "--quiet"]) == 2
