"""Signal tracks: reading .npy files, aligning them with records, the spec, the network binding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddsm.conditioning import TrackBinding, TrackSpec, design_track
from ddsm.data import DNA, Record, data_hash, encode_records, read_track, split
from ddsm.errors import DDSMInputError


def _records(n: int = 6, length: int = 5) -> list[Record]:
    rng = np.random.default_rng(0)
    return [Record(f"r{i}", "".join(rng.choice(list("ACGT"), size=length)), {}) for i in range(n)]


# ------------------------------------------------------------------------------------ reading
def test_read_track_accepts_2d_and_3d(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    got = read_track(tmp_path / "a.npy")
    assert got.dtype == np.float32 and got.shape == (3, 4)
    np.save(tmp_path / "b.npy", np.ones((3, 4, 2), dtype=np.int64))
    assert read_track(tmp_path / "b.npy").shape == (3, 4, 2)


@pytest.mark.parametrize("make, pattern", [
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "not a plain numeric"),
    (lambda p: np.save(p, np.array(["a", "b"])), "expected numbers"),
    (lambda p: np.save(p, np.array([[1.0, np.nan]])), "non-finite value at index \\(0, 1\\)"),
    (lambda p: np.save(p, np.zeros((2, 2, 2, 2))), "1 to 3 dimensions"),
    (lambda p: np.save(p, np.zeros((0, 3))), "non-empty"),
    (lambda p: p.write_text("1 2 3\n"), "not a NumPy .npy file"),
    (lambda p: np.savez(p.with_suffix(""), a=np.zeros(3)) or p.with_suffix(".npz").rename(p), "not a NumPy .npy file"),
])
def test_read_track_rejects_bad_files(tmp_path, make, pattern):
    path = tmp_path / "t.npy"
    make(path)
    with pytest.raises(DDSMInputError, match=pattern):
        read_track(path)


def test_read_track_missing_file(tmp_path):
    with pytest.raises(DDSMInputError, match="no such file"):
        read_track(tmp_path / "nope.npy")


# ------------------------------------------------------------------------------------ dataset
def test_encode_records_attaches_and_checks_track():
    recs = _records()
    tr = np.random.default_rng(1).random((6, 5))
    ds = encode_records(recs, DNA, track=tr)
    assert ds.track.shape == (6, 5, 1) and ds.track.dtype == np.float32
    np.testing.assert_allclose(ds.track[..., 0], tr.astype(np.float32))
    with pytest.raises(DDSMInputError, match="5 rows but the sequence file has 6 records"):
        encode_records(recs, DNA, track=tr[:5])
    with pytest.raises(DDSMInputError, match="length 4 but the sequences are encoded to length 5"):
        encode_records(recs, DNA, track=tr[:, :4])


def test_skipped_records_drop_their_track_rows():
    recs = _records()
    recs[2] = Record("bad", "ACNGT", {})
    tr = np.arange(30, dtype=np.float32).reshape(6, 5)
    ds = encode_records(recs, DNA, unknown="skip", track=tr)
    assert len(ds) == 5
    np.testing.assert_array_equal(ds.track[:, 0, 0], [0, 5, 15, 20, 25])


def test_split_and_subset_carry_the_track():
    ds = encode_records(_records(20), DNA, track=np.arange(100, dtype=np.float32).reshape(20, 5))
    tr, va = split(ds, 0.25, seed=0)
    assert tr.track.shape == (15, 5, 1) and va.track.shape == (5, 5, 1)
    ids = {r: i for i, r in enumerate(ds.ids)}
    for part in (tr, va):
        for j, rid in enumerate(part.ids):
            np.testing.assert_array_equal(part.track[j], ds.track[ids[rid]])


def test_data_hash_covers_the_track_only_when_present():
    recs = _records()
    plain = encode_records(recs, DNA)
    before = data_hash(plain)
    tracked = encode_records(recs, DNA, track=np.zeros((6, 5)))
    other = encode_records(recs, DNA, track=np.ones((6, 5)))
    assert data_hash(encode_records(recs, DNA)) == before
    assert len({before, data_hash(tracked), data_hash(other)}) == 3


# ------------------------------------------------------------------------------------ spec
def test_spec_config_round_trip_and_transform():
    spec = TrackSpec.for_width(2, ["cage", "atac"], "log1p")
    assert TrackSpec.from_config(spec.to_config()) == spec
    assert TrackSpec.from_config(None) is None
    x = np.array([[[0.0, np.e - 1]]], dtype=np.float32)
    np.testing.assert_allclose(spec.apply(x), [[[0.0, 1.0]]], rtol=1e-6)
    with pytest.raises(DDSMInputError, match="needs values >= 0"):
        spec.apply(-x - 1)
    with pytest.raises(DDSMInputError, match="has 1 channel"):
        spec.apply(x[..., :1])
    with pytest.raises(DDSMInputError, match="transform must be one of"):
        TrackSpec.for_width(1, None, "sqrt")
    with pytest.raises(DDSMInputError, match="1 track names given for a track with 2"):
        TrackSpec.for_width(2, ["a"])
    with pytest.raises(DDSMInputError, match="malformed 'track'"):
        TrackSpec.from_config({"names": ["a"]})


@pytest.mark.parametrize("shape, expected", [
    ((7,), (1, 7, 1)), ((7, 1), (1, 7, 1)), ((3, 7), (3, 7, 1)), ((3, 7, 1), (3, 7, 1)),
])
def test_design_track_shapes_single_channel(shape, expected):
    spec = TrackSpec.for_width(1)
    assert design_track(spec, np.zeros(shape), 3, 7).shape == expected


def test_design_track_shapes_multi_channel_and_errors():
    spec = TrackSpec.for_width(2)
    assert design_track(spec, np.zeros((7, 2)), 3, 7).shape == (1, 7, 2)
    assert design_track(spec, np.zeros((3, 7, 2)), 3, 7).shape == (3, 7, 2)
    for bad in [(7,), (3, 7), (4, 7, 2), (3, 6, 2), (7, 3)]:
        with pytest.raises(DDSMInputError, match=r"expected \(7, 2\) for every design or \(3, 7, 2\)"):
            design_track(spec, np.zeros(bad), 3, 7)


# ------------------------------------------------------------------------------------ binding
def test_binding_follows_rows_through_subsets_and_labels():
    calls = []

    def net(x, t, cond):
        calls.append((x, cond))
        return x

    track = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1).expand(4, 3, 1)
    labels = torch.tensor([7, 8, 9, 10])
    b = TrackBinding(net, track, labels)
    rows = b.rows()
    assert rows.tolist() == [0, 1, 2, 3]
    x = torch.zeros(4, 3, 2)
    use = torch.tensor([False, True, False, True])
    out = b(x[use], torch.zeros(2), rows[use])  # what bits self-conditioning does
    assert out.shape == (2, 3, 3)
    assert out[:, 0, 2].tolist() == [1.0, 3.0] and calls[-1][1].tolist() == [8, 10]
    b2 = TrackBinding(net, track, None)
    b2(x, torch.zeros(4), rows)
    assert calls[-1][1] is None


def test_binding_refuses_state_models():
    class Oracle:
        takes_state = True

        def __call__(self, *a):
            return a[0]

    with pytest.raises(ValueError, match="takes_state"):
        TrackBinding(Oracle(), torch.zeros(2, 3, 1))
