"""Turning records into fixed-length token arrays (with labels) ready for training.

This is the one place where sequence lengths, letters outside the alphabet and class labels are
reconciled, so every later stage can assume a clean ``(N, L)`` int array with values in ``[0, K)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ddsm.data.alphabet import Alphabet, infer_alphabet
from ddsm.data.record import Record
from ddsm.data.track import as_track_array, dataset_track
from ddsm.errors import DDSMInputError

logger = logging.getLogger(__name__)

#: what ``encode_records`` may do with letters outside the alphabet
UNKNOWN_MODES = ("error", "random", "skip")


@dataclass
class SequenceDataset:
    """Encoded sequences.

    Attributes:
        tokens: ``(N, L)`` int64, values in ``[0, K)``; padding positions hold 0.
        pad_mask: ``(N, L)`` bool, True = real letter, False = padding.
        labels: ``(N,)`` int64 indices into ``classes``, or None when unlabelled.
        classes: class names, ``classes[labels[i]]`` is record i's label (empty when unlabelled).
        alphabet: the alphabet the tokens index.
        ids: ``N`` record ids.
        track: ``(N, L, S)`` float32 per-position signal tracks aligned with ``tokens``, or None
            (see :mod:`ddsm.data.track`).
    """

    tokens: np.ndarray
    pad_mask: np.ndarray
    labels: np.ndarray | None
    classes: list[str]
    alphabet: Alphabet
    ids: list[str]
    track: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.ndim != 2 or self.pad_mask.shape != self.tokens.shape:
            raise ValueError(
                f"tokens {self.tokens.shape} and pad_mask {self.pad_mask.shape} "
                "must both be (N, L)"
            )
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"labels shape {self.labels.shape} != ({n},)")
        if len(self.ids) != n:
            raise ValueError(f"{len(self.ids)} ids for {n} sequences")
        if self.track is not None and (self.track.ndim != 3 or self.track.shape[:2] != self.tokens.shape):
            raise ValueError(f"track shape {self.track.shape} != ({n}, {self.tokens.shape[1]}, S)")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        """``L``, the padded sequence length."""
        return int(self.tokens.shape[1])

    def subset(self, indices: np.ndarray | Sequence[int]) -> SequenceDataset:
        """The rows ``indices`` (``(M,)`` ints), in that order, as a new dataset."""
        idx = np.asarray(indices, dtype=np.int64)
        return SequenceDataset(
            tokens=self.tokens[idx],
            pad_mask=self.pad_mask[idx],
            labels=None if self.labels is None else self.labels[idx],
            classes=list(self.classes),
            alphabet=self.alphabet,
            ids=[self.ids[i] for i in idx.tolist()],
            track=None if self.track is None else self.track[idx],
        )

    def with_track(self, track: np.ndarray, what: str = "track") -> SequenceDataset:
        """This dataset with ``track`` ``(N, L)`` or ``(N, L, S)`` attached (checked against it)."""
        return dataclasses.replace(self, track=dataset_track(track, len(self), self.length, what))


def encode_records(
    records: Sequence[Record],
    alphabet: Alphabet | None = None,
    *,
    length: int | None = None,
    label_key: str | None = None,
    classes: Sequence[str] | None = None,
    unknown: str = "error",
    rng: np.random.Generator | None = None,
    track: np.ndarray | None = None,
    variable_length: bool = False,
) -> SequenceDataset:
    """Encode records into a :class:`SequenceDataset`.

    Args:
        records: the sequences (``N`` of them).
        alphabet: default: inferred from the letters (see ``infer_alphabet``).
        length: crop/pad every sequence to this ``L``: longer ones keep their centre, shorter ones
            are right-padded with token 0 and ``pad_mask`` False. Default: all sequences must have
            the same length.
        label_key: read each record's label from ``meta[label_key]``.
        classes: the class names in label order; default: the sorted distinct labels.
        unknown: letters outside the alphabet (e.g. ``N`` in DNA): ``"error"``, ``"random"``
            (replace by a random letter drawn from ``rng``: uniform among the letters an ambiguity
            code stands for, ``R`` -> A or G in DNA, else among all letters) or ``"skip"`` (drop
            the record).
        rng: the source of randomness for ``unknown="random"``.
        track: per-position signal tracks, one row per record in ``records`` order: ``(N, L)`` or
            ``(N, L, S)`` with L the encoded length; rows of skipped records are dropped with them.
        variable_length: model the lengths: the alphabet gets an end letter (``Alphabet.with_end``;
            kept if ``alphabet`` already has one), every row is right-padded with it to ``length``
            (default: the longest record) and ``pad_mask`` is all True, so the process learns
            where sequences end. Longer records are centre-cropped to ``length``.

    Raises:
        DDSMInputError: no records, a letter outside the alphabet (with ``unknown="error"``), all
            records skipped, unequal lengths without ``length``, a missing label, a label not in
            ``classes``, a track whose shape does not match, or a bad option value.
        ValueError: ``unknown="random"`` without ``rng``.
    """
    if not records:
        raise DDSMInputError("no sequences to encode")
    if unknown not in UNKNOWN_MODES:
        choices = ", ".join(UNKNOWN_MODES)
        raise DDSMInputError(f"unknown-letter mode {unknown!r}; choose one of {choices}")
    if length is not None and length < 1:
        raise DDSMInputError(f"length must be a positive integer, got {length}")
    if alphabet is None:
        alphabet = infer_alphabet([r.seq for r in records])
    if variable_length:
        alphabet = alphabet.with_end()
    if alphabet.end and any(alphabet.end in r.seq for r in records):
        i = next(i for i, r in enumerate(records) if alphabet.end in r.seq)
        raise DDSMInputError(f"record {i + 1} ({records[i].id!r}) contains {alphabet.end!r}, the end-of-sequence "
                             "letter of this model; sequences may not hold it")

    # Encode everything in one vectorised pass, then cut the flat array back into records.
    sizes = np.array([len(r.seq) for r in records], dtype=np.int64)
    if (sizes == 0).any():
        i = int(np.flatnonzero(sizes == 0)[0])
        raise DDSMInputError(f"record {i + 1} ({records[i].id!r}) has an empty sequence")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    text = "".join(r.seq for r in records)
    flat = alphabet.to_indices(text)
    bad = np.flatnonzero(flat < 0)
    keep = np.arange(len(records))
    if bad.size:
        owners = np.searchsorted(starts, bad, side="right") - 1
        if unknown == "error":
            first = int(owners[0])
            _raise_unknown(
                records,
                alphabet,
                first,
                int(bad[0] - starts[first]),
                n_letters=bad.size,
                n_records=np.unique(owners).size,
            )
        elif unknown == "random":
            if rng is None:
                raise ValueError('unknown="random" needs rng=np.random.Generator')
            flat[bad] = _draw_for_unknown(alphabet, text, bad, rng)
        else:
            keep = np.setdiff1d(keep, owners)
            logger.warning(
                "skipped %d of %d sequences with letters outside alphabet %s (%s)",
                len(records) - keep.size,
                len(records),
                alphabet.name,
                alphabet.letters,
            )
            if keep.size == 0:
                raise DDSMInputError(
                    f"every sequence has letters outside alphabet {alphabet.name} "
                    f"({alphabet.letters}); nothing left after skipping"
                )
    rows = [flat[starts[i] : starts[i + 1]] for i in keep.tolist()]
    if alphabet.end and length is None:
        length = max(r.size for r in rows)
    tokens, pad_mask = _fit_length(rows, length)
    if alphabet.end:  # padding is the end letter, and it is learned
        tokens[~pad_mask] = alphabet.end_id
        pad_mask = np.ones_like(pad_mask)
    kept = [records[i] for i in keep.tolist()]
    labels, class_list = _labels(kept, keep, label_key, classes)
    ds = SequenceDataset(
        tokens=tokens,
        pad_mask=pad_mask,
        labels=labels,
        classes=class_list,
        alphabet=alphabet,
        ids=[r.id for r in kept],
    )
    if track is None:
        return ds
    arr = as_track_array(track)
    if arr.shape[0] != len(records):
        raise DDSMInputError(f"track has {arr.shape[0]} rows but the sequence file has {len(records)} records; "
                             "tracks must hold one row per record, in file order")
    return ds.with_track(arr[keep])


def _draw_for_unknown(alphabet: Alphabet, text: str, where: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Token ids ``(len(where),)`` replacing the unknown letters ``text[where]``: uniform over the
    letters each ambiguity code allows (all letters for an unknown symbol)."""
    codes = alphabet.ambiguity_codes
    out = rng.integers(0, len(alphabet.symbols), size=where.size)  # never the end letter
    chars = np.array([text[i] for i in where.tolist()])
    for code in set(chars.tolist()):
        allowed = codes.get(code, "")
        if not allowed or len(allowed) == len(alphabet.symbols):
            continue
        sel = np.flatnonzero(chars == code)
        ids = np.array([alphabet.letters.index(c) for c in allowed], dtype=np.int64)
        out[sel] = ids[rng.integers(0, ids.size, size=sel.size)]
    return out


def _raise_unknown(
    records: Sequence[Record],
    alphabet: Alphabet,
    index: int,
    pos: int,
    *,
    n_letters: int,
    n_records: int,
) -> None:
    record = records[index]
    raise DDSMInputError(
        f"record {index + 1} ({record.id!r}): letter {record.seq[pos]!r} at 1-based position "
        f"{pos + 1} is not in alphabet {alphabet.name} ({alphabet.letters}) "
        f"[{n_letters} such letters in {n_records} records]",
        remedy="unknown", hint="use --unknown random or --unknown skip, or choose another --alphabet",
    )


def _fit_length(rows: list[np.ndarray], length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``N`` 1-D rows into ``(N, L)`` tokens and pad mask, cropping/padding to ``length``."""
    sizes = np.array([r.size for r in rows])
    lo, hi = int(sizes.min()), int(sizes.max())
    if length is None:
        if lo != hi:
            raise DDSMInputError(
                f"sequences have different lengths ({lo}..{hi})", remedy="length",
                hint="pass --length N to crop/pad",
            )
        length = lo
    if lo == hi == length:
        tokens = np.stack(rows).astype(np.int64, copy=False)
        return tokens, np.ones(tokens.shape, dtype=bool)
    tokens = np.zeros((len(rows), length), dtype=np.int64)
    pad_mask = np.zeros((len(rows), length), dtype=bool)
    for i, row in enumerate(rows):
        if row.size >= length:
            # Centre crop: for DHS-style data the signal sits around the centre (peak summit).
            start = (row.size - length) // 2
            tokens[i] = row[start : start + length]
            pad_mask[i] = True
        else:
            tokens[i, : row.size] = row
            pad_mask[i, : row.size] = True
    return tokens, pad_mask


def _labels(
    records: list[Record],
    numbers: np.ndarray,
    label_key: str | None,
    classes: Sequence[str] | None,
) -> tuple[np.ndarray | None, list[str]]:
    """Label indices ``(N,)`` and the class list; ``numbers`` are 0-based record numbers."""
    if classes is not None and len(set(classes)) != len(classes):
        raise DDSMInputError(f"classes contain duplicates: {', '.join(classes)}")
    if label_key is None:
        return None, list(classes or [])
    values: list[str] = []
    for record, number in zip(records, numbers.tolist()):
        if label_key not in record.meta:
            present = ", ".join(sorted(record.meta)) or "none"
            raise DDSMInputError(
                f"record {number + 1} ({record.id!r}) has no {label_key!r} label "
                f"(its annotations: {present})"
            )
        if not record.meta[label_key].strip():
            raise DDSMInputError(f"record {number + 1} ({record.id!r}) has an empty {label_key!r} label")
        values.append(record.meta[label_key])
    class_list = sorted(set(values)) if classes is None else list(classes)
    index = {name: i for i, name in enumerate(class_list)}
    for record, number, value in zip(records, numbers.tolist(), values):
        if value not in index:
            raise DDSMInputError(
                f"record {number + 1} ({record.id!r}): {label_key}={value!r} is not one of the "
                f"classes {', '.join(class_list)}"
            )
    return np.array([index[v] for v in values], dtype=np.int64), class_list


def data_hash(dataset: SequenceDataset) -> str:
    """A stable fingerprint of the encoded data, recorded with runs to tell datasets apart.

    SHA-256 over: a JSON header (shape, alphabet letters, classes), then the bytes of ``tokens``
    (little-endian int64, row-major), ``pad_mask`` (one byte each) and ``labels`` (little-endian
    int64, if any), then, only for data with a signal track, its shape and bytes (little-endian
    float32), so the hash of track-less data is unchanged. Independent of ids, platform and numpy
    version.
    """
    h = hashlib.sha256()
    header = {
        "shape": list(dataset.tokens.shape),
        "letters": dataset.alphabet.letters,
        "classes": list(dataset.classes),
        "labelled": dataset.labels is not None,
    }
    h.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    h.update(np.ascontiguousarray(dataset.tokens, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(dataset.pad_mask, dtype=np.bool_).tobytes())
    if dataset.labels is not None:
        h.update(np.ascontiguousarray(dataset.labels, dtype="<i8").tobytes())
    if dataset.track is not None:
        h.update(json.dumps({"track_shape": list(dataset.track.shape)}).encode("utf-8"))
        h.update(np.ascontiguousarray(dataset.track, dtype="<f4").tobytes())
    return h.hexdigest()


def split(
    dataset: SequenceDataset, valid_fraction: float, *, seed: int
) -> tuple[SequenceDataset, SequenceDataset]:
    """Random train/validation split; both parts keep the original row order.

    Args:
        dataset: ``N >= 2`` sequences.
        valid_fraction: in (0, 1); the validation part gets ``round(N * valid_fraction)`` rows,
            at least 1 and at most ``N - 1``.
        seed: makes the split reproducible.

    Returns:
        ``(train, valid)``.
    """
    n = len(dataset)
    if not 0.0 < valid_fraction < 1.0:
        raise DDSMInputError(f"validation fraction must be in (0, 1), got {valid_fraction}")
    if n < 2:
        raise DDSMInputError(f"cannot split {n} sequence(s) into train and validation")
    n_valid = min(n - 1, max(1, round(n * valid_fraction)))
    order = np.random.default_rng(seed).permutation(n)
    return dataset.subset(np.sort(order[n_valid:])), dataset.subset(np.sort(order[:n_valid]))
