"""Hostile inputs through the CLI: every row exits 2 with one ``ddsm: error:`` line and writes nothing.

``python tests/integration/test_hostile_cli.py`` prints the README's hostile-input table from
these very cases (input -> the message the CLI printed).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from ddsm.cli import main

QUIET = ["--quiet", "--device", "cpu"]
TINY = ["--model", "mlp", "--set-model", "hidden=8", "--steps", "3", "--batch-size", "8"]


def _dna(rng: random.Random, n: int, length: int = 24) -> list[str]:
    return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(n)]


def build_world(d: Path) -> dict[str, Path]:
    """Small files and models every case draws on."""
    rng = random.Random(5)
    w = {}
    w["dna"] = d / "dna.fa"
    w["dna"].write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(_dna(rng, 30))))
    iupac = _dna(rng, 30)
    iupac[3] = "ACGTRYKMACGTACGTACGTACGT"
    w["iupac"] = d / "iupac.fa"
    w["iupac"].write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(iupac)))
    w["odd"] = d / "odd.fa"
    w["odd"].write_text(">a\nACGTXYZ\n")
    w["symbols"] = d / "symbols.fa"
    w["symbols"].write_text(">a\nACGT!?\n>b\nAC!?GT\n")
    for name, header in (("eqeq", "class==strong"), ("eq2", "class=weak=strong"), ("twice", "class=a class=b")):
        w[name] = d / f"{name}.fa"
        w[name].write_text("".join(f">s{i} {header if i == 4 else 'class=a'}\n{s}\n"
                                   for i, s in enumerate(_dna(rng, 10))))
    w["mixed"] = d / "mixed.fa"
    w["mixed"].write_text(">a\n" + "ACGT" * 6 + "\n>b\n" + "ACGT" * 7 + "\n")
    w["withn"] = d / "withn.fa"
    w["withn"].write_text(">a\n" + "ACGN" * 6 + "\n")
    w["empty"] = d / "empty.fa"
    w["empty"].write_text("")
    w["pt"] = d / "model.pt"
    w["pt"].write_bytes(b"PK\x03\x04 pickle")
    w["exists"] = d / "exists.fa"
    w["exists"].write_text("precious\n")
    w["model"] = d / "model"
    assert main(["train", "--data", str(w["dna"]), "--out", str(w["model"]), *TINY, *QUIET]) == 0
    pep = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(12)) for _ in range(20)]
    w["pep"] = d / "pep.fa"
    w["pep"].write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(pep)))
    w["protein"] = d / "protein"
    assert main(["train", "--data", str(w["pep"]), "--out", str(w["protein"]), *TINY, *QUIET]) == 0
    for field, value in (("seq_len", 300), ("classes", ["a", "b"])):
        edited = d / f"edited_{field}"
        shutil.copytree(w["model"], edited)
        cfg = json.loads((edited / "config.json").read_text())
        cfg[field] = value
        (edited / "config.json").write_text(json.dumps(cfg))
        w[f"edited_{field}"] = edited
    return w


#: (input as a user would describe it, argv builder, the message must contain)
CASES = [
    ("DNA with IUPAC codes, default `--unknown error`", lambda w, o: ["train", "--data", w["iupac"], "--out", o, *TINY],
     "use --unknown random or --unknown skip"),
    ("one record `ACGTXYZ`", lambda w, o: ["train", "--data", w["odd"], "--out", o, *TINY], "'X'"),
    ("letters of no standard alphabet (`ACGT!?`)", lambda w, o: ["train", "--data", w["symbols"], "--out", o, *TINY],
     "--alphabet custom"),
    ("header `class==strong`", lambda w, o: ["train", "--data", w["eqeq"], "--out", o, "--label-key", "class", *TINY],
     "malformed annotation"),
    ("header `class=weak=strong`",
     lambda w, o: ["train", "--data", w["eq2"], "--out", o, "--label-key", "class", *TINY],
     "malformed annotation"),
    ("header `class=a class=b`", lambda w, o: ["train", "--data", w["twice"], "--out", o, *TINY], "given twice"),
    ("labelled and unlabelled `--data` mixed", lambda w, o: ["train", "--data", f"a={w['dna']}", str(w["dna"]), "--out",
                                                             o, *TINY], "give every file a label"),
    ("sequences of mixed length, no `--length`", lambda w, o: ["train", "--data", w["mixed"], "--out", o, *TINY],
     "--variable-length"),
    ("empty FASTA", lambda w, o: ["train", "--data", w["empty"], "--out", o, *TINY], "is empty"),
    ("`config.json` edited: `seq_len` 300 on a 24-letter model",
     lambda w, o: ["sample", w["edited_seq_len"], "-n", "2", "-o", o], "field 'seq_len'"),
    ("`config.json` edited: `classes` added", lambda w, o: ["sample", w["edited_classes"], "-n", "2", "-o", o],
     "field 'classes'"),
    ("a `.pt` file as the model", lambda w, o: ["sample", w["pt"], "-n", "2", "-o", o], "pickle"),
    ("protein model, `--gc 0.4:0.6`", lambda w, o: ["sample", w["protein"], "-n", "2", "-o", o, "--gc", "0.4:0.6"],
     "--gc needs a DNA or RNA model"),
    ("protein model, `--forbid KZ` (Z is no residue)",
     lambda w, o: ["sample", w["protein"], "-n", "2", "-o", o, "--forbid", "KZ"], "letter 'Z' is not allowed"),
    ("protein model, `--fixed` with a letter outside the alphabet",
     lambda w, o: ["sample", w["protein"], "-n", "2", "-o", o, "--fixed", "B" + "." * 11],
     "not in the protein alphabet"),
    ("`--fixed` of the wrong length", lambda w, o: ["sample", w["model"], "-n", "2", "-o", o, "--fixed", "NNAC"],
     "has length 4"),
    ("`--class` on a model without classes", lambda w, o: ["sample", w["model"], "-n", "2", "-o", o, "--class", "all"],
     "no classes"),
    ("`--design-length` on a fixed-length model",
     lambda w, o: ["sample", w["model"], "-n", "2", "-o", o, "--design-length", "10"], "variable-length model"),
    ("`--gc` not MIN:MAX", lambda w, o: ["sample", w["model"], "-n", "2", "-o", o, "--gc", "lots"], "MIN:MAX"),
    ("`--seed -1`", lambda w, o: ["sample", w["model"], "-n", "2", "-o", o, "--seed", "-1"], "--seed"),
    ("output exists, no `--force`", lambda w, o: ["sample", w["model"], "-n", "2", "-o", w["exists"]], "--force"),
    ("`score`: sequences of another length", lambda w, o: ["score", w["model"], w["mixed"], "-o", o], "--crop"),
    ("`score`: `N` in DNA", lambda w, o: ["score", w["model"], w["withn"], "-o", o], "--unknown random"),
]


def run_case(w: dict[str, Path], d: Path, argv_fn) -> tuple[int, str, str]:
    out = d / "out_of_case"
    argv = [str(a) for a in argv_fn(w, out)] + QUIET
    err, std = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(std):
        code = main(argv)
    leftovers = [p.name for p in d.iterdir() if p.name.startswith("out_of_case")]
    return code, err.getvalue(), std.getvalue() + (" LEFT " + ",".join(leftovers) if leftovers else "")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    return d, build_world(d)


@pytest.mark.parametrize("what, argv_fn, fragment", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_exits_2_with_one_line_and_no_output(world, what, argv_fn, fragment):
    d, w = world
    before = (w["exists"].read_bytes(), sorted(p.name for p in d.iterdir()))
    code, err, out = run_case(w, d, argv_fn)
    assert code == 2, (what, code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddsm: error: "), (what, err)
    assert fragment in lines[0], (what, lines[0])
    assert out == "", (what, out)
    assert (w["exists"].read_bytes(), sorted(p.name for p in d.iterdir())) == before


if __name__ == "__main__":  # the README table
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        w = build_world(d)
        print("| input | exit | message (one line on stderr; nothing written) |\n|---|---|---|")
        for what, argv_fn, _ in CASES:
            code, err, _ = run_case(w, d, argv_fn)
            msg = err.strip().replace(str(d) + "/", "").replace("|", "\\|")
            print(f"| {what} | {code} | `{msg}` |")
    sys.exit(0)
