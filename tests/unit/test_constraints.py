"""Constraints: motif scanning, GC windows, fixed patterns, and exact constrained design."""

from __future__ import annotations

import numpy as np
import pytest

from ddsm.constraints import ForbiddenMotifs, GCWindow, constrained_design, parse_fixed, reverse_complement
from ddsm.errors import DDSMInputError

LETTERS = "ACGT"


def test_reverse_complement_and_hits_on_both_strands():
    assert reverse_complement("GAATTCN") == "NGAATTC"
    assert reverse_complement("ACGR") == "YCGT"
    fm = ForbiddenMotifs.parse(["GGATCA"])
    assert fm.hits("TTTGGATCATT") == [(3, 9)]
    assert fm.hits("TTTTGATCCTT") == [(3, 9)]  # reverse complement TGATCC
    assert fm.ok("ACGTACGTAC")
    iupac = ForbiddenMotifs.parse(["GANTC"])
    assert iupac.hits("AAGACTCAA") == [(2, 7)]
    overlapping = ForbiddenMotifs.parse(["AA"], both_strands=False)
    assert overlapping.hits("AAAA") == [(0, 2), (1, 3), (2, 4)]
    with pytest.raises(DDSMInputError):
        ForbiddenMotifs.parse(["GAXTC"])


def test_gc_window_parse_and_check():
    w = GCWindow.parse("40:60")
    assert (w.lo, w.hi) == (0.4, 0.6)
    assert w.ok("GCAT") and not w.ok("GGGA")
    for bad in ("0.6:0.4", "abc", "1:2:3", "-1:0.5"):
        with pytest.raises(DDSMInputError):
            GCWindow.parse(bad)


def test_parse_fixed_pattern():
    tok, mask = parse_fixed("NNTAN", LETTERS, 5)
    assert mask.tolist() == [False, False, True, True, False]
    assert tok[2] == 3 and tok[3] == 0
    with pytest.raises(DDSMInputError, match="length 3"):
        parse_fixed("NNT", LETTERS, 5)
    with pytest.raises(DDSMInputError, match="position 2"):
        parse_fixed("NXNNN", LETTERS, 5)


def random_draw(seed: int):
    """A stand-in sampler: uniform random letters, honouring the per-row fixed positions."""
    rng = np.random.default_rng(seed)

    def draw(rows, tokens, mask):
        out = rng.integers(0, 4, size=tokens.shape)
        out = np.where(mask, tokens, out)
        return ["".join(LETTERS[i] for i in row) for row in out]

    return draw


def test_constrained_design_is_exact_on_every_output():
    L = 120
    fixed_tok, fixed_mask = parse_fixed("N" * 10 + "TATAAA" + "N" * (L - 16), LETTERS, L)
    fm = ForbiddenMotifs.parse(["GAATTC", "GGATCC", "CG"])  # CG is frequent: many repairs needed
    gc = GCWindow(0.3, 0.45)
    res = constrained_design(random_draw(0), 200, L, LETTERS, fixed=(fixed_tok, fixed_mask), forbid=fm, gc=gc,
                             rounds=60)
    done = [s for s in res.sequences if s is not None]
    assert len(done) + len(res.failures) == 200
    assert len(done) >= 190
    for s in done:
        assert len(s) == L and s[10:16] == "TATAAA"
        assert fm.ok(s) and gc.ok(s)
    assert max(res.samples_used) > 1  # the repairs really happened


def test_constrained_design_reports_impossible_requests():
    L = 30
    tok, mask = parse_fixed("NNNGAATTCN" + "N" * 20, LETTERS, L)
    res = constrained_design(random_draw(1), 5, L, LETTERS, fixed=(tok, mask),
                             forbid=ForbiddenMotifs.parse(["GAATTC"]), rounds=5)
    assert all(s is None for s in res.sequences)
    assert all("fixed positions" in why for why in res.failures.values())
    res = constrained_design(random_draw(2), 5, L, LETTERS, gc=GCWindow(0.99, 1.0), rounds=3)
    assert all(s is None for s in res.sequences) and all("GC" in w for w in res.failures.values())
    assert res.samples_used == [3] * 5
