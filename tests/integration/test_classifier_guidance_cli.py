"""``ddsm sample --classifier-guidance W [--classifier DIR]`` end to end, with exit codes."""

from __future__ import annotations

import pytest
import torch

from ddsm.metrics.oracle import Oracle, OracleCNN

CPU = ["--quiet", "--device", "cpu"]
SEQ_LEN = 24  # of the conftest's tiny model


@pytest.fixture(scope="module")
def tiny_oracle(tmp_path_factory):
    """An (untrained) oracle folder with classes x and y: only its gradients matter here."""
    torch.manual_seed(0)
    model = OracleCNN(2, channels=8, kernel_size=5).eval()
    oracle = Oracle(model=model, classes=["x", "y"], label_key="kind", seq_len=SEQ_LEN, rc_average=True,
                    name="tiny")
    return oracle.save(tmp_path_factory.mktemp("oracle") / "tiny")


def test_sample_with_classifier_guidance(cli, trained_model, tiny_oracle, tmp_path):
    fa = tmp_path / "g.fasta"
    r = cli("sample", trained_model, "-n", "3", "-o", fa, "--steps", "4", "--classifier-guidance", "2",
            "--classifier", tiny_oracle, "--class", "y", *CPU)
    assert r.code == 0, r.err
    text = fa.read_text()
    assert text.count(">") == 3 and "classifier_guidance=2" in text and "classifier=tiny" in text


def test_guidance_interval_is_recorded_and_checked(cli, trained_model, tiny_oracle, tmp_path):
    import json

    fa = tmp_path / "i.fasta"
    r = cli("sample", trained_model, "-n", "2", "-o", fa, "--steps", "4", "--classifier-guidance", "2",
            "--classifier", tiny_oracle, "--class", "y", "--guidance-interval", "0,0.5", *CPU)
    assert r.code == 0, r.err
    assert "guidance_interval=0,0.5" in fa.read_text()
    side = json.loads((tmp_path / "i.fasta.json").read_text())
    assert side["settings"]["guidance_interval"] == [0.0, 0.5]
    for bad in ("0.5", "0.6,0.2", "a,b"):
        r = cli("sample", trained_model, "-n", "2", "-o", tmp_path / "j.fasta", "--steps", "2",
                "--classifier-guidance", "1", "--classifier", tiny_oracle, "--class", "y",
                "--guidance-interval", bad, *CPU)
        assert r.code == 2 and "--guidance-interval" in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert not (tmp_path / "j.fasta").exists()


def test_bundled_model_uses_its_bundled_oracle(cli, tmp_path):
    fa = tmp_path / "b.fasta"
    r = cli("sample", "dhs4", "-n", "2", "-o", fa, "--steps", "3", "--classifier-guidance", "1", "--class", "K562",
            "--guidance", "1", *CPU)
    assert r.code == 0, r.err
    assert fa.read_text().count(">") == 2 and "classifier=bundled" in fa.read_text()


@pytest.fixture(scope="module")
def masked_model(tmp_path_factory, data_dir):
    from ddsm.cli import main

    out = tmp_path_factory.mktemp("masked") / "ckpt"
    assert main(["train", "--data", str(data_dir / "train.fasta"), "--out", str(out), "--process", "masked",
                 "--model", "mlp", "--set-model", "hidden=8", "--steps", "3", "--batch-size", "8", *CPU]) == 0
    return out


def test_discrete_process_is_refused(cli, masked_model, tiny_oracle, tmp_path):
    r = cli("sample", masked_model, "-n", "2", "-o", tmp_path / "m.fasta", "--classifier-guidance", "1",
            "--classifier", tiny_oracle, "--class", "x", *CPU)
    assert r.code == 2 and "needs a simplex or bits process" in r.err and "'masked'" in r.err
    assert len(r.err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, pattern", [
    (["--classifier", "ORACLE", "--class", "x"], "--classifier needs --classifier-guidance"),
    (["--classifier-guidance", "1", "--classifier", "ORACLE"], "needs --class"),
    (["--classifier-guidance", "1", "--classifier", "ORACLE", "--class", "z"], "'z' is not one of the classes"),
    (["--classifier-guidance", "-1", "--classifier", "ORACLE", "--class", "x"], "finite number >= 0"),
    (["--classifier-guidance", "1", "--class", "x"], "needs --classifier DIR"),
    (["--classifier-guidance", "1", "--classifier", "no_such_oracle", "--class", "x"], "no oracle"),
])
def test_bad_classifier_guidance_options(cli, trained_model, tiny_oracle, tmp_path, extra, pattern):
    args = [str(tiny_oracle) if a == "ORACLE" else a for a in extra]
    r = cli("sample", trained_model, "-n", "2", "-o", tmp_path / "x.fasta", "--steps", "2", *args, *CPU)
    assert r.code == 2 and pattern in r.err, r.err


def test_sample_help_documents_track_and_classifier_guidance(capsys):
    from ddsm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["sample", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--classifier-guidance W" in text and "--classifier DIR" in text and "--track FILE.npy" in text
