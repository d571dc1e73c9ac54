"""Per-position signal-track conditioning: a toy problem where the track decides the sequence,
every process end to end, checkpoints, resume and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddsm.api import design, fit, load_run, score
from ddsm.data import DNA, Record, encode_records
from ddsm.errors import DDSMInputError
from ddsm.processes import PROCESSES
from ddsm.training import TrainConfig

CPU = ["--quiet", "--device", "cpu"]

L = 16
P_ONE = 0.3  # fraction of positions whose track is 1


def toy(n: int, seed: int) -> tuple[list[Record], np.ndarray]:
    """Track 1 -> the letter is A; track 0 -> C, G or T uniformly. ``(records, track (n, L))``."""
    rng = np.random.default_rng(seed)
    track = (rng.random((n, L)) < P_ONE).astype(np.float32)
    seqs = ["".join("A" if track[i, j] else rng.choice(list("CGT")) for j in range(L)) for i in range(n)]
    return [Record(f"s{i}", s, {}) for i, s in enumerate(seqs)], track


def agreement(seqs: list[str], track: np.ndarray) -> float:
    """Fraction of positions where (letter == A) matches (track == 1)."""
    is_a = np.array([[c == "A" for c in s] for s in seqs])
    return float((is_a == (track > 0.5)).mean())


def tiny_cfg(steps: int, **kw) -> TrainConfig:
    opts = dict(steps=steps, batch_size=32, lr=3e-3, warmup_steps=20, eval_every=0, checkpoint_every=0, seed=0,
                ema_decay=0.95, log_every=0)
    opts.update(kw)
    return TrainConfig(**opts)


@pytest.mark.parametrize("process", ["masked", "bits"])  # bits: self-conditioning calls the net on a subset
def test_track_decides_the_sequence(process):
    recs, track = toy(512, 0)
    ds = encode_records(recs, DNA, track=track)
    run, _ = fit(ds, None, process=process, model="mlp", model_options={"hidden": 32}, train_config=tiny_cfg(300))
    _, test_track = toy(64, 1)
    res = design(run, 64, steps=30, track=test_track, generator=torch.Generator().manual_seed(0),
                 device=torch.device("cpu"))
    got = agreement(res.sequences, test_track)
    # chance: a model blind to the track puts A at 30 % of positions, independently of the track
    chance = P_ONE * P_ONE + (1 - P_ONE) * (1 - P_ONE)
    shuffled = agreement(res.sequences, test_track[::-1])
    print(f"\n{process}: agreement with the track {got:.3f}, with another design's track {shuffled:.3f}, "
          f"chance {chance:.2f}")
    assert got > 0.9
    assert shuffled < 0.7


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_every_process_trains_and_samples_with_a_track(process):
    recs, track = toy(24, 2)
    two = np.stack([track, 1 - track], axis=-1)  # S = 2
    ds = encode_records(recs, DNA, track=two)
    causal = PROCESSES[process].causal
    model, opts = ("transformer", {"d_model": 16, "n_layers": 1, "n_heads": 2}) if causal else ("mlp", {"hidden": 8})
    cfg = TrainConfig(steps=2, batch_size=8, warmup_steps=1, eval_every=0, checkpoint_every=0, log_every=0)
    run, summary = fit(ds, None, process=process, model=model, model_options=opts, train_config=cfg)
    assert np.isfinite(summary["final_train_loss"])
    assert run.model.in_channels == run.process.in_channels + 2
    assert run.track.n_track == 2
    res = design(run, 3, steps=4, track=two[0], generator=torch.Generator().manual_seed(0),
                 device=torch.device("cpu"))
    assert all(s is not None and len(s) == L for s in res.sequences)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    recs, track = toy(64, 3)
    ds = encode_records(recs, DNA, track=track * 5.0)
    valid = encode_records(*toy(16, 4)[:1], DNA)
    out = tmp_path / "run"
    run, _ = fit(ds, out, process="dirichlet-fm", model="mlp", model_options={"hidden": 8},
                 train_config=tiny_cfg(5, eval_every=5), valid=valid, valid_track=toy(16, 4)[1] * 5.0,
                 track_transform="log1p", track_names=["cage"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["track"] == {"n_track": 1, "names": ["cage"], "transform": "log1p"}
    assert cfg["model"]["options"]["in_channels"] == 4 + 1
    again = load_run(out)
    kw = dict(steps=5, track=track[0] * 5.0, device=torch.device("cpu"))
    a = design(run, 4, generator=torch.Generator().manual_seed(7), **kw).sequences
    b = design(again, 4, generator=torch.Generator().manual_seed(7), **kw).sequences
    assert a == b
    with pytest.raises(DDSMInputError, match="trained with a signal track \\(1 channel\\(s\\): cage\\); pass --track"):
        design(again, 2, steps=3, device=torch.device("cpu"))
    with pytest.raises(DDSMInputError, match="needs values >= 0"):
        design(again, 2, steps=3, track=-np.ones(L), device=torch.device("cpu"))
    bits = score(again, ds.subset(np.arange(4)), steps=3, generator=torch.Generator().manual_seed(0))
    assert bits.shape == (4,) and np.isfinite(bits).all()
    with pytest.raises(DDSMInputError, match="trained with a signal track"):
        score(again, encode_records(recs[:4], DNA), steps=3)
    # a model without a track refuses one
    plain, _ = fit(encode_records(recs, DNA), None, process="dirichlet-fm", model="mlp",
                   model_options={"hidden": 8}, train_config=tiny_cfg(2))
    with pytest.raises(DDSMInputError, match="trained without a signal track; drop --track"):
        design(plain, 2, steps=3, track=track[0], device=torch.device("cpu"))


def test_resume_refuses_a_different_track_setting(tmp_path):
    recs, track = toy(32, 5)
    out = tmp_path / "run"
    fit(encode_records(recs, DNA, track=track), out, process="masked", model="mlp", model_options={"hidden": 8},
        train_config=tiny_cfg(3))
    with pytest.raises(DDSMInputError, match="trained with a signal track .*, this run is without a signal track"):
        fit(encode_records(recs, DNA), out, process="masked", model="mlp", model_options={"hidden": 8},
            train_config=tiny_cfg(6), resume=True)


def test_validation_track_must_match_training(tmp_path):
    recs, track = toy(32, 6)
    ds = encode_records(recs, DNA, track=track)
    with pytest.raises(DDSMInputError, match="both have signal tracks or neither"):
        fit(ds, None, process="masked", model="mlp", model_options={"hidden": 8}, train_config=tiny_cfg(2),
            valid=encode_records(recs[:8], DNA))


# ------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def track_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("track")
    recs, track = toy(48, 7)
    (d / "train.fasta").write_text("".join(f">{r.id}\n{r.seq}\n" for r in recs))
    np.save(d / "train.npy", track)
    vrecs, vtrack = toy(8, 8)
    (d / "valid.fasta").write_text("".join(f">{r.id}\n{r.seq}\n" for r in vrecs))
    np.save(d / "valid.npy", vtrack)
    np.save(d / "design.npy", vtrack[0])
    np.save(d / "short.npy", vtrack[0][:-1])
    return d


TRAIN = ["--process", "masked", "--model", "mlp", "--set-model", "hidden=8", "--steps", "4", "--batch-size", "8"]


def test_cli_train_sample_score_with_track(cli, track_files, tmp_path):
    d = track_files
    out = tmp_path / "run"
    r = cli("train", "--data", d / "train.fasta", "--track", d / "train.npy", "--valid", d / "valid.fasta",
            "--valid-track", d / "valid.npy", "--track-names", "cage", "--out", out, *TRAIN, *CPU)
    assert r.code == 0, r.err
    assert json.loads((out / "config.json").read_text())["track"]["names"] == ["cage"]
    fa = tmp_path / "s.fasta"
    r = cli("sample", out, "-n", "3", "-o", fa, "--steps", "4", "--track", d / "design.npy", *CPU)
    assert r.code == 0, r.err
    assert fa.read_text().count(">") == 3 and "track=design.npy" in fa.read_text()
    r = cli("sample", out, "-n", "3", "-o", tmp_path / "x.fasta", "--steps", "4", *CPU)
    assert r.code == 2 and "trained with a signal track" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("sample", out, "-n", "3", "-o", tmp_path / "x.fasta", "--steps", "4", "--track", d / "short.npy", *CPU)
    assert r.code == 2 and "has shape (15,)" in r.err
    r = cli("score", out, d / "valid.fasta", "-o", tmp_path / "sc.tsv", "--steps", "2", "--track",
            d / "valid.npy", *CPU)
    assert r.code == 0, r.err
    r = cli("score", out, d / "valid.fasta", "-o", tmp_path / "sc2.tsv", "--steps", "2", *CPU)
    assert r.code == 2 and "trained with a signal track" in r.err


@pytest.mark.parametrize("extra, pattern", [
    (["--track", "valid.npy"], "track has 8 rows but the sequence file has 48 records"),
    (["--track", "train.npy", "--valid", "valid.fasta"], "--valid with --track needs --valid-track"),
    (["--valid-track", "valid.npy"], "--valid-track needs --track"),
    (["--track", "train.npy", "--track-transform", "log1p", "--track-names", "a,b"], "2 track names given"),
    (["--track-transform", "log1p"], "need --track"),
    (["--track", "missing.npy"], "no such file"),
])
def test_cli_train_track_errors(cli, track_files, tmp_path, extra, pattern):
    d = track_files
    args = [str(d / a) if a.endswith((".npy", ".fasta")) else a for a in extra]
    r = cli("train", "--data", d / "train.fasta", "--out", tmp_path / "run", *args, *TRAIN, *CPU)
    assert r.code == 2 and pattern in r.err, r.err


def test_cli_sample_track_on_a_plain_model(cli, trained_model, track_files, tmp_path):
    r = cli("sample", trained_model, "-n", "2", "-o", tmp_path / "x.fasta", "--steps", "3", "--track",
            track_files / "design.npy", *CPU)
    assert r.code == 2 and "trained without a signal track" in r.err
