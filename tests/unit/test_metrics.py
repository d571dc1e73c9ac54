"""Metrics against hand-computed values: k-mers, GC, motifs, discriminator, diversity, oracle, evaluate."""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pytest
import torch

from ddsm.data import Record
from ddsm.errors import DDSMInputError
from ddsm.metrics import (
    MotifSet,
    auroc,
    discriminator_auroc,
    gc_content,
    gc_distance,
    identity_matrix,
    js_distance,
    kmer_counts,
    kmer_features,
    kmer_js,
    kmer_names,
    kmer_spectrum,
    load_jaspar,
    mean_pairwise_hamming,
    nearest_identity,
    novelty_summary,
    parse_jaspar,
    scan_counts,
)
from ddsm.metrics.discriminator import fit_logistic, stratified_folds
from ddsm.metrics.motifs import hit_rates, log2_enrichment, rate_correlation


def random_dna(n: int, length: int, seed: int = 0, p=None) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length, p=p)) for _ in range(n)]


# ----------------------------------------------------------------------------------------- k-mers
def test_kmer_spectrum_hand_counted():
    # AC, CG, GT (CGTN: the N window is skipped), AC -> AC 2/4, CG 1/4, GT 1/4
    spec = kmer_spectrum(["ACGTN", "AC"], 2)
    names = kmer_names(2)
    expected = dict.fromkeys(names, 0.0) | {"AC": 0.5, "CG": 0.25, "GT": 0.25}
    assert spec.tolist() == [expected[n] for n in names]


def test_kmer_counts_per_sequence_and_order():
    counts = kmer_counts(["AAAC", "TTT", "A"], 1)
    assert counts.tolist() == [[3, 1, 0, 0], [0, 0, 0, 3], [1, 0, 0, 0]]
    c3 = kmer_counts(["ACGTAC"], 3)
    assert c3.sum() == 4
    names = kmer_names(3)
    assert {names[i] for i in np.flatnonzero(c3[0])} == {"ACG", "CGT", "GTA", "TAC"}
    assert names[:2] == ["AAA", "AAC"] and names[-1] == "TTT"


def test_kmer_spectrum_matches_naive_loop():
    seqs = random_dna(20, 37, seed=1) + ["ACGNNTTAGC", "AC"]
    for k in (1, 3, 5):
        index = {"".join(p): i for i, p in enumerate(product("ACGT", repeat=k))}
        naive = np.zeros(4**k)
        for s in seqs:
            for j in range(len(s) - k + 1):
                if s[j : j + k] in index:
                    naive[index[s[j : j + k]]] += 1
        np.testing.assert_allclose(kmer_spectrum(seqs, k), naive / naive.sum())
        np.testing.assert_allclose(kmer_counts(seqs, k).sum(0), naive)


def test_js_distance_hand_values():
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([0.5, 0.5], [0.5, 0.5]) == 0.0
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); JSD = 1/2 log2(4/3) + 1/2 (1/2 log2(2/3) + 1/2 log2 2)
    jsd = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert js_distance([1, 0], [0.5, 0.5]) == pytest.approx(math.sqrt(jsd))
    assert kmer_js(["AAAA"], ["CCCC"], 2) == pytest.approx(1.0)


def test_gc_content_and_distance():
    np.testing.assert_allclose(gc_content(["GGCC", "AATT", "ACGN"]), [1.0, 0.0, 2 / 3])
    # Wasserstein-1 of {0, 1} vs {0.5, 0.5}: every unit of mass moves 0.5
    assert gc_distance(["AAAA", "GGGG"], ["ACAC", "GTGT"]) == pytest.approx(0.5)
    assert gc_distance(["ACGT"], ["TGCA"]) == 0.0
    assert math.isnan(gc_distance(["NNNN"], ["ACGT"]))


# ----------------------------------------------------------------------------------------- motifs
JASPAR_TEXT = """>M1\tTATA
A [ 0 10 0 10 ]
C [ 0 0 0 0 ]
G [ 0 0 0 0 ]
T [ 10 0 10 0 ]
>M2 GGG
A [ 0 0 0 ]
C [ 0 0 0 ]
G [ 5 5 5 ]
T [ 0 0 0 ]
"""


def test_parse_jaspar_and_bundled_set():
    ms = parse_jaspar(JASPAR_TEXT)
    assert ms.ids == ("M1", "M2") and ms.names == ("TATA", "GGG")
    assert ms.counts[0].shape == (4, 4) and ms.counts[0][1].tolist() == [10, 0, 0, 0]
    bundled = load_jaspar()
    assert len(bundled) == 879
    assert bundled.ids[0] == "MA0002.3" and bundled.names[0] == "Runx1"
    assert bundled.widths.min() == 5 and bundled.widths.max() == 33
    with pytest.raises(DDSMInputError, match="four equal-length"):
        parse_jaspar(">X\nA [ 1 2 ]\nC [ 1 ]\nG [ 1 2 ]\nT [ 1 2 ]\n")


def test_log_odds_hand_value():
    ms = parse_jaspar(JASPAR_TEXT)
    pwm = ms.log_odds(pseudocount=0.8)[0]
    # column 1 of TATA: T = (10 + 0.2) / 10.8, others 0.2 / 10.8; uniform background 0.25
    assert pwm[0, 3] == pytest.approx(math.log2(10.2 / 10.8 / 0.25))
    assert pwm[0, 0] == pytest.approx(math.log2(0.2 / 10.8 / 0.25))


def test_scan_counts_hand_counted_both_strands():
    ms = parse_jaspar(JASPAR_TEXT)
    # TATA is its own reverse complement at every offset: hits at 0 and 2 in TATATA (threshold 1 =
    # only the best word); GGG hits at 0, 1 forward and the CCC at 5 on the reverse strand.
    counts = scan_counts(["TATATA", "GGGGACCC", "ACGT"], ms, threshold=1.0)
    assert counts.tolist() == [[2, 0], [0, 3], [0, 0]]
    fwd = scan_counts(["GGGGACCC"], ms, threshold=1.0, both_strands=False)
    assert fwd.tolist() == [[0, 2]]


def test_scan_counts_matches_brute_force_on_bundled_motifs():
    ms = load_jaspar()
    pick = [0, 1, int(np.argmax(ms.widths)), int(np.argmin(ms.widths)), 400]
    sub = ms.subset(pick)
    seqs = random_dna(6, 60, seed=3) + ["ACGTNNACGT" * 3, "ACG"]
    got = scan_counts(seqs, sub, threshold=0.7)
    pwms = sub.log_odds()
    idx = {c: i for i, c in enumerate("ACGT")}
    for m, w in enumerate(pwms):
        thr = w.min(1).sum() + 0.7 * (w.max(1).sum() - w.min(1).sum())
        rc = w[::-1, ::-1]
        for n, s in enumerate(seqs):
            hits = 0
            for i in range(len(s) - len(w) + 1):
                f = sum(w[j, idx[c]] for j, c in enumerate(s[i : i + len(w)]) if c in idx)
                r = sum(rc[j, idx[c]] for j, c in enumerate(s[i : i + len(w)]) if c in idx)
                hits += max(f, r) >= thr - 1e-6
            assert got[n, m] == hits, (m, n)


def test_motif_rates_correlation_enrichment():
    counts = np.array([[1, 0, 2], [3, 0, 0]])
    np.testing.assert_allclose(hit_rates(counts, 400), [10.0, 0.0, 5.0])
    assert rate_correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert rate_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(rate_correlation([1, 1, 1], [1, 2, 3]))
    np.testing.assert_allclose(log2_enrichment([0.99, 0.0], [0.49, 0.0]), [1.0, 0.0])


def test_motif_scan_is_fast_enough_for_the_bundled_set():
    # 100 x 200 bp x 879 motifs, both strands: a correctness smoke test at realistic size
    counts = scan_counts(random_dna(100, 200, seed=4))
    assert counts.shape == (100, 879) and counts.sum() > 0


# ---------------------------------------------------------------------------------- discriminator
def test_auroc_hand_values():
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([1, 1, 1, 1]), np.array([0, 0, 1, 1])) == 0.5  # ties count one half
    assert math.isnan(auroc(np.array([1, 2]), np.array([1, 1])))


def test_fit_logistic_separates_and_folds_stratify():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-2, 1, (50, 2)), rng.normal(2, 1, (50, 2))]
    y = np.r_[np.zeros(50), np.ones(50)]
    w, b = fit_logistic(X, y, l2=0.1)
    assert auroc(X @ w + b, y) > 0.97
    folds = stratified_folds(y, 5, rng)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    assert all(y[f].sum() == 10 and len(f) == 20 for f in folds)


def test_kmer_features_blocks_sum_to_one():
    X = kmer_features(["ACGTACGT", "AAAA"], ks=(1, 2))
    assert X.shape == (2, 20)
    np.testing.assert_allclose(X[:, :4].sum(1), 1.0)
    np.testing.assert_allclose(X[:, 4:].sum(1), 1.0)
    assert X[1, 0] == 1.0


def test_discriminator_auroc_chance_and_separable():
    real = random_dna(150, 60, seed=5)
    same = random_dna(150, 60, seed=6)
    gc_rich = random_dna(150, 60, seed=7, p=[0.15, 0.35, 0.35, 0.15])
    assert abs(discriminator_auroc(same, real) - 0.5) < 0.12
    assert discriminator_auroc(gc_rich, real) > 0.95
    assert math.isnan(discriminator_auroc(real[:3], real))


# --------------------------------------------------------------------------------------- diversity
def test_identity_and_hamming_hand_values():
    ident = identity_matrix(["ACGT", "ACGA"], ["ACGTT", "NCGT"])
    # ACGT vs ACGTT: 4 matches / 5; ACGT vs NCGT: 3/4 (N never matches); ACGA: 3/5, 2/4
    np.testing.assert_allclose(ident, [[0.8, 0.75], [0.6, 0.5]])
    # pairs of AAAA, AATT, TTTT: distances 0.5, 1.0, 0.5
    assert mean_pairwise_hamming(["AAAA", "AATT", "TTTT"]) == pytest.approx(2 / 3)
    assert math.isnan(mean_pairwise_hamming(["ACGT"]))
    assert abs(mean_pairwise_hamming(random_dna(200, 100, seed=8)) - 0.75) < 0.01


def test_nearest_identity_and_memorisation():
    train = random_dna(300, 50, seed=9)
    copy = train[17]
    near = copy[:45] + ("A" if copy[45] != "A" else "C") + copy[46:]  # one mismatch
    designed = [copy, near, random_dna(1, 50, seed=10)[0]]
    best = nearest_identity(designed, train, chunk=64)  # several chunks
    assert best[0] == 1.0 and best[1] == pytest.approx(49 / 50)
    assert 0.3 < best[2] < 0.6
    summary = novelty_summary(designed, train)
    assert summary["memorised_frac"] == pytest.approx(2 / 3)
    assert summary["nearest_identity"] == pytest.approx(best.mean())


# ------------------------------------------------------------------------------------------ oracle
def test_oracle_train_save_load_predict(tmp_path):
    from ddsm.metrics.oracle import Oracle, OracleTrainConfig, load_oracle, train_oracle

    # class "gc" is GC-rich, class "at" AT-rich: trivially learnable in a couple of epochs
    gc = random_dna(120, 40, seed=11, p=[0.1, 0.4, 0.4, 0.1])
    at = random_dna(120, 40, seed=12, p=[0.4, 0.1, 0.1, 0.4])
    seqs, labels = gc + at, ["gc"] * 120 + ["at"] * 120
    rng_state = torch.random.get_rng_state()
    oracle = train_oracle(seqs[::2], labels[::2], seqs[1::2], labels[1::2], label_key="kind", name="toy",
                          model_options={"channels": 16}, config=OracleTrainConfig(epochs=3, batch_size=16, lr=1e-2))
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's generator is untouched
    assert oracle.classes == ["at", "gc"]
    assert oracle.info["metrics"]["valid_accuracy"] > 0.9
    folder = oracle.save(tmp_path / "toy")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["kind"] == "ddsm-oracle" and cfg["label_key"] == "kind" and cfg["seq_len"] == 40
    again = load_oracle(folder)
    np.testing.assert_allclose(again.logits(seqs[:10]), oracle.logits(seqs[:10]), atol=1e-5)
    assert again.predict(["GCGCGCGCGCGGCCGCGCGCGCGCGCGGCGCGCCGCGCGC"]) == ["gc"]
    # shorter / longer inputs are padded / centre-cropped to the training length
    assert len(again.predict(["ACGT", "A" * 100])) == 2
    with pytest.raises(DDSMInputError, match="no oracle"):
        load_oracle(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"kind": "other"}')
    with pytest.raises(DDSMInputError, match="not a ddsm oracle"):
        Oracle.load(tmp_path / "bad")


def test_bundled_oracles_load_and_match():
    from ddsm.metrics.oracle import bundled_oracles, load_oracle, match_oracle

    bundled = bundled_oracles()
    assert {"dhs4", "epd_promoters"} <= set(bundled)
    for name, folder in bundled.items():
        assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
        o = load_oracle(name)
        assert len(o.classes) == 4 and o.info["metrics"]["valid_accuracy"] > 0.5
    assert match_oracle(["K562", "HepG2"]) == "dhs4"
    assert match_oracle(["human", "fly"]) == "epd_promoters"
    assert match_oracle(["K562", "human"]) is None


def test_bundled_dhs4_oracle_beats_chance_on_bundled_validation_data():
    from ddsm.data import bundled_path, read_fasta
    from ddsm.metrics.oracle import load_oracle

    valid = read_fasta(bundled_path("dhs4/valid_small.fasta.gz"))[::5]
    acc = load_oracle("dhs4").accuracy([r.seq for r in valid], [r.meta["cell_type"] for r in valid])
    assert acc > 0.6  # 4 balanced classes: chance is 0.25


# ---------------------------------------------------------------------------------------- evaluate
def _records(seqs, label, key="cell_type"):
    return [Record(id=f"{label}_{i}", seq=s, meta={key: label}) for i, s in enumerate(seqs)]


def test_evaluate_identical_sets_give_ideal_values():
    from ddsm.evaluate import evaluate, metric_columns

    a = random_dna(60, 50, seed=13)
    b = random_dna(60, 50, seed=14, p=[0.1, 0.4, 0.4, 0.1])
    ref = _records(a, "x") + _records(b, "y")
    # designs = the reference itself, labelled through ddsm sample's class= key
    des = [Record(id=r.id, seq=r.seq, meta={"class": r.meta["cell_type"]}) for r in ref]
    df = evaluate(des, ref, label_key="cell_type", train=[r.seq for r in ref], oracle="none", max_seqs=40)
    assert list(df.index) == ["x", "y", "all"] and list(df.columns) == metric_columns()
    assert df.loc["x", "n_designed"] == 60 and df.loc["all", "n_reference"] == 120
    for col in ("kmer3_js", "kmer6_js", "gc_w1"):
        assert df[col].abs().max() < 1e-9
    assert (df["motif_corr"] > 0.999).all()
    assert (df["nearest_train_identity"] == 1.0).all() and (df["memorised_frac"] == 1.0).all()
    np.testing.assert_allclose(df["diversity"], df["diversity_reference"])
    assert df["oracle_target_frac"].isna().all()
    assert (df["disc_auroc"] < 0.7).all()


def test_evaluate_plain_strings_and_errors():
    from ddsm.evaluate import evaluate

    a, b = random_dna(30, 40, seed=15), random_dna(30, 40, seed=16)
    df = evaluate(a, b, motifs=False)
    assert list(df.index) == ["all"] and math.isnan(df.loc["all", "motif_corr"])
    assert math.isnan(df.loc["all", "nearest_train_identity"])
    with pytest.raises(DDSMInputError, match="has no cell_type"):
        evaluate(a, b, label_key="cell_type")
    with pytest.raises(DDSMInputError, match="no reference sequence has cell_type="):
        evaluate(_records(a, "x"), _records(b, "y"), label_key="cell_type", motifs=False)
    with pytest.raises(DDSMInputError, match="no designed"):
        evaluate([], b)
    with pytest.raises(DDSMInputError, match="no oracle"):
        evaluate(_records(a, "x"), _records(b, "x"), label_key="cell_type", oracle="nope", motifs=False)
    with pytest.raises(DDSMInputError, match="not DNA"):
        evaluate(["MKVLAAGIV"], b, motifs=False)
    # lower case (soft-masked) input is compared as upper case
    low = evaluate([s.lower() for s in a], a, motifs=False, max_seqs=10)
    assert low.loc["all", "kmer3_js"] == 0.0 and low.loc["all", "gc_w1"] == 0.0


def test_evaluate_auto_oracle_on_real_dhs_validation_data():
    from ddsm.data import bundled_path, read_fasta
    from ddsm.evaluate import evaluate_detailed, format_table

    valid = read_fasta(bundled_path("dhs4/valid_small.fasta.gz"))[::10]
    train = read_fasta(bundled_path("dhs4/train_small.fasta.gz"))[::8]
    ev = evaluate_detailed(valid, train, label_key="cell_type", motifs=False, max_seqs=50)
    assert ev.oracle["name"] == "dhs4"
    assert ev.table.loc["all", "oracle_target_frac"] > 0.6
    text = format_table(ev.table)
    assert "oracle_target_frac" in text and "K562" in text
    js = ev.to_json()
    assert js["metrics"]["all"]["motif_corr"] is None and js["oracle"]["name"] == "dhs4"
    json.dumps(js)  # NaN-free, serialisable


def test_import_ddsm_stays_light():
    import subprocess
    import sys

    code = ("import sys, ddsm, ddsm.evaluate, ddsm.metrics; "
            "print(any(m in sys.modules for m in ('pandas', 'matplotlib', 'logomaker', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_torch_threads_untouched():
    before = torch.get_num_threads()
    scan_counts(["ACGTACGTAC"], parse_jaspar(JASPAR_TEXT))
    assert torch.get_num_threads() == before


def test_motifset_subset_labels():
    ms = parse_jaspar(JASPAR_TEXT)
    sub = ms.subset([1])
    assert isinstance(sub, MotifSet) and sub.labels() == ["M2 GGG"]


def test_logos_cover_only_shared_positions_and_the_data_letters():
    from ddsm.report import plots

    designs = ["ACGT" * 3, "ACGT" * 3, "AC"]  # 2 of 3 reach 12 letters
    reference = ["ACGTAC", "ACGTACGT"]  # half reach 8
    assert plots.covered_length([designs, reference]) == 8
    assert plots.covered_length([designs, []]) == 0
    assert plots.logo_letters(["ACGT", "AC"]) == "ACGT"
    assert plots.logo_letters(["MKV", "WK"]) == "KMVW"
    start, stop = plots.logo_window(["ACGT" * 10], 4, stop=6)
    assert 0 <= start and stop <= 6
