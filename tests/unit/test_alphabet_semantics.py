"""Alphabets own their constraint semantics: motifs, free symbols, GC, inference, ambiguity codes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ddsm.constraints import ForbiddenMotifs, constrained_design, parse_fixed
from ddsm.data import DNA, PROTEIN, RNA, Alphabet, encode_records
from ddsm.data.fasta import parse_fasta
from ddsm.data.record import Record
from ddsm.errors import DDSMInputError


def test_protein_motifs_are_literal():
    fm = ForbiddenMotifs.parse(["KK"], alphabet=PROTEIN)
    assert fm.hits("AKKA") == [(1, 3)]
    assert fm.ok("AGGTTGTA")  # KK is two lysines, not IUPAC [GT][GT]
    rr = ForbiddenMotifs.parse(["RR"], alphabet=PROTEIN)
    assert rr.ok("AAGGCCTT") and not rr.ok("MRRM")  # not [AG][AG] on both strands
    assert not rr.both_strands  # proteins have no reverse strand
    with pytest.raises(DDSMInputError, match="letter 'Z'"):
        ForbiddenMotifs.parse(["KZ"], alphabet=PROTEIN)


def test_dna_motifs_expand_iupac_on_both_strands_unless_told():
    fm = ForbiddenMotifs.parse(["RR"], alphabet=DNA)
    for s in ("AA", "AG", "GA", "GG", "CC", "CT", "TC", "TT"):
        assert not fm.ok(s), s
    one = ForbiddenMotifs.parse(["GGATCA"], alphabet=DNA, both_strands=False)
    assert one.ok("TGATCC") and not one.ok("GGATCA")
    rna = ForbiddenMotifs.parse(["GAT"], alphabet=RNA)
    assert not rna.ok("CGAUC") and not rna.ok("AUCG")  # GAU and its reverse complement AUC


def test_custom_motifs_are_case_sensitive_literals():
    abc = Alphabet("custom", "aAbB")
    fm = ForbiddenMotifs.parse(["ab"], alphabet=abc)
    assert fm.ok("ABAB") and not fm.ok("Aab")
    with pytest.raises(DDSMInputError):
        ForbiddenMotifs.parse(["ac"], alphabet=abc)


def test_free_symbols_follow_the_alphabet():
    tok, mask = parse_fixed("N.NN", PROTEIN, 4)  # N is asparagine in proteins
    assert mask.tolist() == [True, False, True, True]
    assert tok[0] == PROTEIN.letters.index("N")
    _, mask = parse_fixed("MX-K", PROTEIN, 4)
    assert mask.tolist() == [True, False, False, True]
    _, mask = parse_fixed("AN.T", DNA, 4)
    assert mask.tolist() == [True, False, False, True]
    with pytest.raises(DDSMInputError, match="free positions: N or ."):
        parse_fixed("AXGT", DNA, 4)
    assert PROTEIN.free_symbols == (".", "-", "X") and DNA.free_symbols == ("N", ".")
    assert Alphabet("custom", "-.ab").free_symbols == ()


def test_gc_only_for_nucleotides():
    assert DNA.has_gc and RNA.has_gc and not PROTEIN.has_gc and not Alphabet("custom", "01").has_gc


def test_unknown_random_draws_within_the_ambiguity_code():
    recs = [Record("a", "R" * 400), Record("b", "Y" * 400 + "ACGT"[:0])]
    ds = encode_records([Record("x", "ACGT" * 100)] + recs, DNA, unknown="random", length=400,
                        rng=np.random.default_rng(0))
    r, y = ds.tokens[1], ds.tokens[2]
    assert set(r.tolist()) == {0, 2}  # A, G
    assert set(y.tolist()) == {1, 3}  # C, T
    assert abs((r == 0).mean() - 0.5) < 0.1


@pytest.mark.parametrize("seed", range(6))
def test_forbidden_motifs_never_in_outputs_for_any_alphabet(seed):
    """Property: whatever the alphabet and motifs, exact design never emits a hit."""
    rng = np.random.default_rng(seed)
    alphabets = [PROTEIN, DNA, RNA, Alphabet("custom", "xyz01"), Alphabet("custom", "KRDE")]
    alphabet = alphabets[seed % len(alphabets)]
    letters = alphabet.letters
    motifs = ["".join(rng.choice(list(letters), size=int(rng.integers(2, 4)))) for _ in range(3)]
    fm = ForbiddenMotifs.parse(motifs, alphabet=alphabet)
    K, L = len(letters), 30

    def draw(n, tok, mask):
        out = rng.integers(0, K, size=(n, L))
        out = np.where(mask, tok, out)
        return ["".join(letters[i] for i in row) for row in out]

    res = constrained_design(draw, 40, L, letters, forbid=fm, rounds=200)
    assert not res.failures
    for s in res.sequences:
        for m in motifs:
            if alphabet.is_nucleotide:
                forms = {m, alphabet.reverse_complement(m)}
                assert all(re.search(alphabet.motif_regex(f), s) is None for f in forms), (m, s)
            else:
                assert m not in s, (m, s)


def test_malformed_headers_are_refused():
    for header in ("class==strong", "class=weak=strong"):
        with pytest.raises(DDSMInputError, match="malformed annotation"):
            parse_fasta(f">r1 {header}\nACGT\n")
    with pytest.raises(DDSMInputError, match="given twice"):
        parse_fasta(">r1 class=a class=b\nACGT\n")
    assert parse_fasta(">r1 class=a class=a\nACGT\n")[0].meta == {"class": "a"}
    with pytest.raises(DDSMInputError, match="empty 'class' label"):
        encode_records(parse_fasta(">r1 class=\nACGT\n>r2 class=a\nACGT\n"), label_key="class")
