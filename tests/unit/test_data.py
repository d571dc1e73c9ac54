"""Unit tests for the data layer: alphabets, readers/writers, encoding, shuffles, bundled data."""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
from collections import Counter
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from ddsm.data import (
    DNA,
    PROTEIN,
    RNA,
    Alphabet,
    Record,
    atomic_write_text,
    bundled_path,
    data_hash,
    describe_inference,
    dinucleotide_shuffle,
    encode_records,
    get_alphabet,
    infer_alphabet,
    list_bundled,
    read_fasta,
    read_sequences,
    read_table,
    split,
    write_fasta,
    write_tsv,
)
from ddsm.data import io as data_io
from ddsm.errors import DDSMInputError


def raises_input_error(*fragments: str):
    """Context manager: a one-line DDSMInputError whose message contains every fragment."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(DDSMInputError)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self._ctx.__exit__(*exc)
            message = str(self.info.value)
            assert "\n" not in message, message
            for fragment in fragments:
                assert fragment in message, f"{fragment!r} not in {message!r}"
            return suppressed

    return _Check()


def dinucleotides(seq: str) -> Counter:
    return Counter(zip(seq, seq[1:]))


# ---------------------------------------------------------------------------------------------
# errors


def test_input_error_message_is_one_line():
    assert str(DDSMInputError("a\nb\r\nc")) == "a b c"


# ---------------------------------------------------------------------------------------------
# alphabets


def test_alphabet_encode_decode_round_trip():
    tokens = DNA.encode("ACGTTGCA")
    assert tokens.dtype == np.int64
    assert tokens.tolist() == [0, 1, 2, 3, 3, 2, 1, 0]
    assert DNA.decode(tokens) == "ACGTTGCA"
    assert DNA.decode(torch.tensor([3, 2, 1])) == "TGC"
    assert DNA.decode([0, 0]) == "AA"
    assert DNA.decode_batch(np.array([[0, 1], [2, 3]])) == ["AC", "GT"]
    assert (DNA.K, RNA.K, PROTEIN.K) == (4, 4, 20)


def test_alphabet_encode_names_bad_letter_and_position():
    with raises_input_error("'N'", "position 3", "ACGT"):
        DNA.encode("ACNT")
    with raises_input_error("'a'", "position 1"):
        DNA.encode("acgt")


def test_alphabet_decode_rejects_out_of_range():
    with raises_input_error("token id 4", "position 2"):
        DNA.decode([0, 4])
    with raises_input_error("1-D"):
        DNA.decode(np.zeros((2, 2), dtype=int))


def test_alphabet_config_round_trip_and_validation():
    custom = Alphabet("custom", "xyz ")
    assert Alphabet.from_config(custom.to_config()) == custom
    assert Alphabet.from_config(DNA.to_config()) == DNA
    with raises_input_error("'A'", "twice"):
        Alphabet("bad", "ACA")
    with raises_input_error("at least 2"):
        Alphabet("bad", "A")
    with raises_input_error("name, letters"):
        Alphabet.from_config({"letters": "AC"})


def test_get_alphabet():
    assert get_alphabet("dna") is DNA
    assert get_alphabet("Protein") is PROTEIN
    assert get_alphabet("custom:ACGT") is DNA
    assert get_alphabet("custom:01") == Alphabet("custom", "01")
    assert get_alphabet("auto", ["ACGU"]) is RNA
    with raises_input_error("'protien'", "dna", "custom:LETTERS"):
        get_alphabet("protien")
    with raises_input_error("auto"):
        get_alphabet("auto")


@pytest.mark.parametrize(
    "seqs, expected",
    [
        (["ACGT", "AAAA"], DNA),
        (["ACGTN", "ACGT"], DNA),  # N is an unknown base, not asparagine
        (["ACGU"], RNA),
        (["MKV", "WYACGT"], PROTEIN),
        (["ACGTNRYKMSW" + "ACGT" * 20] + ["ACGT" * 50] * 198, DNA),  # IUPAC codes in 1 record: DNA
        (["ACGU", "ACGUN"], RNA),
        (["MKVXB", "WYACGT"], PROTEIN),  # protein ambiguity codes
        (["KKRRKK", "DGHKMNRSTVWY"], PROTEIN),  # IUPAC letters only, but few plain bases: a peptide
    ],
)
def test_infer_alphabet(seqs, expected):
    assert infer_alphabet(seqs) == expected


def test_letters_of_no_standard_alphabet_need_custom():
    # ACGTXYZ used to train a silent 7-letter custom model; now it reads as protein with the
    # ambiguity code X and the unknown Z, which encoding refuses by default
    assert infer_alphabet(["ACGTXYZ"]) is PROTEIN
    with raises_input_error("'X' at 1-based position 5"):
        encode_records(_records("ACGTXYZ"))
    with raises_input_error("--alphabet custom"):
        infer_alphabet(["ACGT!?"])
    with raises_input_error("--alphabet custom"):
        infer_alphabet(["hello", "world"])
    assert get_alphabet("custom", ["hello", "world"]) == Alphabet("custom", "dehlorw")
    assert get_alphabet("custom", ["ACGTXYZ"]) == Alphabet("custom", "ACGTXYZ")


def test_describe_inference_names_the_codes():
    seqs = ["ACGTNRY" + "ACGT" * 10, "ACGT" * 10]
    line = describe_inference(infer_alphabet(seqs), seqs)
    assert "dna" in line and "3 letters are ambiguity codes (N, R, Y)" in line


def test_infer_alphabet_errors():
    with raises_input_error("zero sequences"):
        infer_alphabet([])
    with raises_input_error("'z'"):
        infer_alphabet(["zzz"])


# ---------------------------------------------------------------------------------------------
# FASTA


def test_fasta_round_trip_with_meta(tmp_path):
    records = [
        Record("s1", "ACGT", {"cell_type": "K562", "score": "0.5"}),
        Record("s2", "GGCCA", {}, "free text"),
        Record("s3", "T" * 150, {"empty": ""}),
    ]
    path = write_fasta(tmp_path / "out.fasta", records, line_width=60)
    assert path.read_text().splitlines()[0] == ">s1 cell_type=K562 score=0.5"
    assert read_fasta(path) == records


def test_fasta_gzip_detected_by_content(tmp_path):
    records = [Record("a", "ACGT", {"x": "1"})]
    write_fasta(tmp_path / "out.fasta.gz", records)
    assert (tmp_path / "out.fasta.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert read_fasta(tmp_path / "out.fasta.gz") == records
    # a gzip file with a misleading name, and a plain file named .gz
    (tmp_path / "plain_name.fasta").write_bytes(gzip.compress(b">a x=1\nACGT\n"))
    assert read_fasta(tmp_path / "plain_name.fasta") == records
    (tmp_path / "not_gzip.fa.gz").write_text(">a x=1\nACGT\n")
    assert read_fasta(tmp_path / "not_gzip.fa.gz") == records


def test_fasta_soft_mask_multiline_comments_crlf(tmp_path):
    text = (
        "; old-style comment\r\n# another\r\n\r\n"
        ">r1 label=a some words\r\nacgtNN\r\n  ACG T \r\n\r\n"
        ">r2\r\nggg\r\n"
    )
    (tmp_path / "in.fa").write_text(text, newline="")
    r1, r2 = read_fasta(tmp_path / "in.fa")
    assert r1 == Record("r1", "ACGTNNACGT", {"label": "a"}, "some words")
    assert r2 == Record("r2", "GGG", {})
    assert read_fasta(tmp_path / "in.fa", uppercase=False)[1].seq == "ggg"


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"", ["in.fa", "empty"]),
        (b"\n  \n", ["empty"]),
        (b"; only a comment\n", ["no FASTA records"]),
        (b"ACGT\n>r1\nACGT\n", ["line 1", "before the first '>'", "ACGT"]),
        (b">r1\nACGT\n>r2\n\n>r3\nAC\n", ["record 2", "'r2'", "line 3", "empty sequence"]),
        (b">r1\nACGT\n>\nACGT\n", ["line 3", "no id"]),
        (b">r1\nAC\x00GT\n", ["binary", "NUL"]),
        (b">r1\nAC\xff\xfeGT\n", ["not UTF-8", "0xff", "offset 6"]),
        (b"\x1f\x8b\x08\x00garbage", ["corrupt", "gzip"]),
    ],
)
def test_fasta_errors(tmp_path, content, fragments):
    (tmp_path / "in.fa").write_bytes(content)
    with raises_input_error(*fragments):
        read_fasta(tmp_path / "in.fa")


def test_missing_file_and_directory(tmp_path):
    with raises_input_error("nope.fa", "no such file"):
        read_fasta(tmp_path / "nope.fa")
    with raises_input_error("is a directory"):
        read_sequences(tmp_path)


# ---------------------------------------------------------------------------------------------
# atomic writes


def test_write_refuses_existing_file_without_force(tmp_path):
    path = tmp_path / "out.fa"
    path.write_text("precious\n")
    with raises_input_error("out.fa", "exists", "--force"):
        write_fasta(path, [Record("a", "ACGT", {})])
    assert path.read_text() == "precious\n"
    write_fasta(path, [Record("a", "ACGT", {})], force=True)
    assert read_fasta(path) == [Record("a", "ACGT", {})]


def test_failed_write_leaves_existing_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.tsv"
    path.write_text("precious\n")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data_io.os, "replace", disk_full)
    with raises_input_error("out.tsv", "No space left"):
        write_tsv(path, [{"a": 1}], force=True)
    assert path.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tsv"]


def test_invalid_record_refused_before_touching_file(tmp_path):
    path = tmp_path / "out.fa"
    path.write_text("precious\n")
    with raises_input_error("record 1", "'a b'", "whitespace"):
        write_fasta(path, [Record("a b", "ACGT", {})], force=True)
    with raises_input_error("value of 'k'", "whitespace"):
        write_fasta(path, [Record("a", "ACGT", {"k": "two words"})], force=True)
    assert path.read_text() == "precious\n"


def test_write_into_missing_or_unwritable_directory(tmp_path):
    with raises_input_error("does not exist"):
        atomic_write_text(tmp_path / "missing" / "out.txt", "x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores directory permissions (root)")
        with raises_input_error("not writable"):
            atomic_write_text(locked / "out.txt", "x")
    finally:
        locked.chmod(0o700)


def test_write_reports_permission_denied(tmp_path, monkeypatch):
    # Simulated, because root (as in CI containers) may write anywhere.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data_io.os, "open", denied)
    with raises_input_error("out.txt", "not writable", "Permission denied"):
        atomic_write_text(tmp_path / "out.txt", "x")


def test_atomic_write_keeps_normal_permissions(tmp_path):
    path = atomic_write_text(tmp_path / "out.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------
# tables


def test_read_table_tsv_csv_gzip(tmp_path):
    (tmp_path / "a.tsv").write_text("id\tsequence\tlabel\nx1\tacgt\tpos\nx2\tGGCC\tneg\n")
    records = read_table(tmp_path / "a.tsv")
    assert records == [
        Record("x1", "ACGT", {"label": "pos"}),
        Record("x2", "GGCC", {"label": "neg"}),
    ]
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b'Sequence,note\nACGT,"a, b"\n'))
    assert read_table(tmp_path / "b.csv.gz") == [Record("row1", "ACGT", {"note": "a, b"})]
    (tmp_path / "c.txt").write_text("#name,seq\nn1,AC\n")
    assert read_table(tmp_path / "c.txt", sequence_column="seq") == [Record("n1", "AC", {})]


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("id\tseq\nx\tACGT\n", ["no column 'sequence'", "columns present: 'id', 'seq'"]),
        ("", ["empty"]),
        ("sequence\n", ["no data rows"]),
        ("sequence\tlabel\nACGT\ta\nACGT\n", ["line 3", "expected 2 fields", "got 1"]),
        ("sequence\tlabel\n\ta\n", ["line 2", "empty sequence"]),
        ("sequence\tsequence\nA\tC\n", ["'sequence' appears twice"]),
    ],
)
def test_read_table_errors(tmp_path, content, fragments):
    (tmp_path / "t.tsv").write_text(content)
    with raises_input_error("t.tsv", *fragments):
        read_table(tmp_path / "t.tsv")


def test_write_tsv_round_trip(tmp_path):
    rows = [{"id": "a", "sequence": "ACGT", "score": 1.5}, {"id": "b", "sequence": "GG", "x": None}]
    path = write_tsv(tmp_path / "out.tsv", rows)
    lines = ["id\tsequence\tscore\tx", "a\tACGT\t1.5\t", "b\tGG\t\t"]
    assert path.read_text().splitlines() == lines
    assert read_table(path)[0] == Record("a", "ACGT", {"score": "1.5", "x": ""})
    with raises_input_error("tab or line break"):
        write_tsv(tmp_path / "bad.tsv", [{"a": "x\ty"}])


def test_read_sequences_dispatches_on_content(tmp_path):
    (tmp_path / "seqs.txt").write_text("# comment\n>a k=v\nACGT\n")
    assert read_sequences(tmp_path / "seqs.txt") == [Record("a", "ACGT", {"k": "v"})]
    (tmp_path / "seqs.fa").write_text("sequence,k\nACGT,v\n")
    assert read_sequences(tmp_path / "seqs.fa") == [Record("row1", "ACGT", {"k": "v"})]


_FASTA_ISH = st.text(alphabet=st.sampled_from(list(">ACGTNacgt =;#,\t\n\r\"x")), max_size=200)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.one_of(
        _FASTA_ISH.map(str.encode),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.binary(max_size=200),
        _FASTA_ISH.map(lambda s: gzip.compress(s.encode())),
        st.binary(max_size=50).map(lambda b: b"\x1f\x8b" + b),
    ),
    name=st.sampled_from(["in.fasta", "in.tsv", "in.csv", "in.txt", "in.gz", "in"]),
)
def test_read_sequences_never_raises_anything_but_input_error(content, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            records = read_sequences(path)
        except DDSMInputError as exc:
            assert "\n" not in str(exc)
        else:
            assert records and all(isinstance(r, Record) and r.seq for r in records)


# ---------------------------------------------------------------------------------------------
# encoding


def _records(*seqs: str, **meta: str) -> list[Record]:
    return [Record(f"r{i + 1}", s, dict(meta)) for i, s in enumerate(seqs)]


def test_encode_equal_lengths():
    data = encode_records(_records("ACGT", "TTTT"))
    assert data.alphabet is DNA
    assert data.tokens.dtype == np.int64 and data.tokens.tolist() == [[0, 1, 2, 3], [3, 3, 3, 3]]
    assert data.pad_mask.all() and data.labels is None and data.ids == ["r1", "r2"]
    assert len(data) == 2 and data.length == 4


def test_encode_unequal_lengths_needs_length():
    with raises_input_error("different lengths (2..5)", "--length"):
        encode_records(_records("AC", "ACGTA"))


def test_encode_crop_and_pad():
    data = encode_records(_records("AACGTT", "CG", "ACGT"), DNA, length=4)
    # centre crop of AACGTT is ACGT; CG is right-padded with token 0 and mask False
    assert data.tokens.tolist() == [[0, 1, 2, 3], [1, 2, 0, 0], [0, 1, 2, 3]]
    assert data.pad_mask.tolist() == [[True] * 4, [True, True, False, False], [True] * 4]
    odd = encode_records(_records("ACGTA"), DNA, length=2)  # (5 - 2) // 2 = 1: starts at C
    assert DNA.decode(odd.tokens[0]) == "CG"


def test_encode_unknown_error_names_record_position_letter():
    with raises_input_error("record 2", "'r2'", "'N'", "position 3", "--unknown"):
        encode_records(_records("ACGT", "ACNT", "NNNN"), DNA)


def test_encode_unknown_random_is_seeded():
    recs = _records("ANNT", "NNNN")
    a = encode_records(recs, DNA, unknown="random", rng=np.random.default_rng(7))
    b = encode_records(recs, DNA, unknown="random", rng=np.random.default_rng(7))
    assert np.array_equal(a.tokens, b.tokens)
    assert a.tokens.min() >= 0 and a.tokens.max() < 4
    assert a.tokens[0, 0] == 0 and a.tokens[0, 3] == 3
    with pytest.raises(ValueError):
        encode_records(recs, DNA, unknown="random")


def test_encode_unknown_skip_logs(caplog):
    with caplog.at_level(logging.WARNING, logger="ddsm.data.dataset"):
        data = encode_records(_records("ACGT", "ACNT", "GGGG"), DNA, unknown="skip")
    assert data.ids == ["r1", "r3"]
    assert "skipped 1 of 3" in caplog.text
    with raises_input_error("nothing left"):
        encode_records(_records("NNNN"), DNA, unknown="skip")
    with raises_input_error("'drop'", "error, random, skip"):
        encode_records(_records("ACGT"), DNA, unknown="drop")


def test_encode_infers_dna_with_n_and_skips():
    data = encode_records(_records("ACGT", "ACNT"), unknown="skip")
    assert data.alphabet is DNA and data.ids == ["r1"]


def test_encode_labels():
    recs = [
        Record("a", "AC", {"cell": "K562"}),
        Record("b", "AC", {"cell": "GM12878"}),
        Record("c", "AC", {"cell": "K562"}),
    ]
    data = encode_records(recs, label_key="cell")
    assert data.classes == ["GM12878", "K562"] and data.labels.tolist() == [1, 0, 1]
    given_order = encode_records(recs, label_key="cell", classes=["K562", "GM12878", "HepG2"])
    assert given_order.labels.tolist() == [0, 1, 0]
    assert given_order.classes == ["K562", "GM12878", "HepG2"]
    with raises_input_error("record 2", "'b'", "'GM12878'", "classes K562, HepG2"):
        encode_records(recs, label_key="cell", classes=["K562", "HepG2"])
    with raises_input_error("record 1", "'a'", "no 'tissue' label", "cell"):
        encode_records(recs, label_key="tissue")


def test_data_hash_is_stable_and_sensitive():
    data = encode_records(_records("ACGT", "TTTT", cls="x"), label_key="cls")
    again = encode_records(_records("ACGT", "TTTT", cls="x"), label_key="cls")
    assert data_hash(data) == data_hash(again)
    assert len(data_hash(data)) == 64
    changed = encode_records(_records("ACGT", "TTTA", cls="x"), label_key="cls")
    assert data_hash(changed) != data_hash(data)
    # pinned value: must not change between versions, platforms or numpy releases
    assert data_hash(data) == PINNED_HASH


# the documented recipe computed by hand (json header, <i8 tokens, mask bytes, <i8 labels)
PINNED_HASH = "f791d44ac2d69671dbc80f222dfe96e36e05cadf5a5ce015f0f19c0b2fc25bf2"


def test_split():
    data = encode_records([Record(f"r{i}", "ACGT"[i % 4] * 3, {}) for i in range(10)])
    train, valid = split(data, 0.2, seed=0)
    assert (len(train), len(valid)) == (8, 2)
    assert sorted(train.ids + valid.ids) == sorted(data.ids)
    again_train, _ = split(data, 0.2, seed=0)
    assert again_train.ids == train.ids
    with raises_input_error("(0, 1)"):
        split(data, 1.0, seed=0)


# ---------------------------------------------------------------------------------------------
# bundled data


def test_bundled_dhs4_loads():
    train = read_sequences(bundled_path("dhs4/train_small.fasta.gz"))
    data = encode_records(train, label_key="cell_type")
    assert data.tokens.shape == (4000, 200) and data.alphabet is DNA
    assert data.classes == ["GM12878", "HepG2", "K562", "hESCT0"]
    assert np.bincount(data.labels).tolist() == [1000] * 4
    valid = read_fasta(bundled_path("dhs4/valid_small.fasta.gz"))
    assert len(valid) == 1000
    assert "dhs4/train_small.fasta.gz" in list_bundled()


def test_bundled_unknown_name():
    with raises_input_error("'dhs4/nope'", "available", "dhs4/train_small.fasta.gz"):
        bundled_path("dhs4/nope")
    with raises_input_error("available"):
        bundled_path("../errors.py")


# ---------------------------------------------------------------------------------------------
# dinucleotide shuffle


def test_dinucleotide_shuffle_preserves_pairs_and_ends():
    rng = np.random.default_rng(0)
    for i in range(200):
        n = int(rng.integers(3, 300)) if i % 2 else 200
        letters = "ACGT" if i % 3 else "ACGTN"
        seq = "".join(rng.choice(list(letters), size=n))
        out = dinucleotide_shuffle(seq, rng)
        assert len(out) == len(seq)
        assert dinucleotides(out) == dinucleotides(seq)
        assert (out[0], out[-1]) == (seq[0], seq[-1])
        if n == 200:
            assert out != seq


def test_dinucleotide_shuffle_is_uniform_over_all_solutions():
    # Every sequence with the same pair counts (enumerated by brute force) is equally likely.
    seq = "ACAGTACGATC"
    solutions = {
        seq[0] + "".join(p) + seq[-1]
        for p in set(permutations(seq[1:-1]))
        if dinucleotides(seq[0] + "".join(p) + seq[-1]) == dinucleotides(seq)
    }
    assert len(solutions) == 66
    rng = np.random.default_rng(1)
    counts = Counter(dinucleotide_shuffle(seq, rng) for _ in range(66 * 60))
    assert set(counts) == solutions
    assert chisquare([counts[s] for s in sorted(solutions)]).pvalue > 1e-3


def test_dinucleotide_shuffle_short_and_other_letters():
    rng = np.random.default_rng(0)
    assert dinucleotide_shuffle("", rng) == ""
    assert dinucleotide_shuffle("AC", rng) == "AC"
    protein = "MKVLAAGIVALLLAAGCSSSKEETPATQGS"
    assert dinucleotides(dinucleotide_shuffle(protein, rng)) == dinucleotides(protein)
