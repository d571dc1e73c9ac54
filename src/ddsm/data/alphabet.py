"""Alphabets: the map between letters and token ids ``0 .. K-1``.

An alphabet is just an ordered string of distinct letters; token id ``i`` is ``letters[i]``. It is
saved beside a checkpoint as ``{"name": ..., "letters": ...}`` so that sampling decodes with exactly
the alphabet the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from ddsm.errors import DDSMInputError


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of ``K`` distinct letters; token id ``i`` stands for ``letters[i]``.

    Attributes:
        name: a short label (``"dna"``, ``"protein"``, ``"custom"``...), for messages and configs.
        letters: the letters in token order; at least two, no duplicates. Matching is exact
            (case-sensitive): readers upper-case biological sequences before encoding.
    """

    name: str
    letters: str

    def __post_init__(self) -> None:
        if len(self.letters) < 2:
            raise DDSMInputError(
                f"alphabet {self.name!r} needs at least 2 distinct letters, got {self.letters!r}"
            )
        seen: set[str] = set()
        for letter in self.letters:
            if letter in seen:
                raise DDSMInputError(
                    f"alphabet {self.name!r} lists letter {letter!r} twice: {self.letters!r}"
                )
            seen.add(letter)

    @property
    def K(self) -> int:
        """Number of letters (token ids are ``0 .. K-1``)."""
        return len(self.letters)

    @cached_property
    def _table(self) -> np.ndarray:
        # A dense code-point -> id table makes encoding one vectorised gather instead of a Python
        # loop per letter; -1 marks code points outside the alphabet. cached_property writes to the
        # instance __dict__ directly, so it works on a frozen dataclass.
        table = np.full(max(map(ord, self.letters)) + 1, -1, dtype=np.int64)
        for i, letter in enumerate(self.letters):
            table[ord(letter)] = i
        return table

    def to_indices(self, seq: str) -> np.ndarray:
        """Token ids of ``seq``, with ``-1`` for letters outside the alphabet.

        Args:
            seq: a string of length ``L``.

        Returns:
            ``(L,)`` int64 array with values in ``[-1, K)``.
        """
        # utf-32 gives one fixed-width code unit per character, so the buffer lines up with seq.
        raw = seq.encode("utf-32-le", "surrogatepass")
        codes = np.frombuffer(raw, dtype="<u4").astype(np.int64)
        table = self._table
        inside = codes < table.shape[0]
        return np.where(inside, table[np.where(inside, codes, 0)], -1)

    def encode(self, seq: str) -> np.ndarray:
        """Encode a string into token ids.

        Args:
            seq: a string of length ``L`` made only of this alphabet's letters.

        Returns:
            ``(L,)`` int64 array with values in ``[0, K)``.

        Raises:
            DDSMInputError: naming the first letter outside the alphabet and its 1-based position.
        """
        tokens = self.to_indices(seq)
        bad = np.flatnonzero(tokens < 0)
        if bad.size:
            i = int(bad[0])
            raise DDSMInputError(
                f"letter {seq[i]!r} at 1-based position {i + 1} is not in alphabet "
                f"{self.name} ({self.letters})"
            )
        return tokens

    def decode(self, tokens: Any) -> str:
        """Turn token ids back into a string.

        Args:
            tokens: ``(L,)`` ids in ``[0, K)``, as a numpy array, torch tensor or list of ints.

        Returns:
            the string of length ``L``.

        Raises:
            DDSMInputError: if ``tokens`` is not 1-D or holds an id outside ``[0, K)``.
        """
        ids = _as_int_array(tokens)
        if ids.ndim != 1:
            raise DDSMInputError(f"decode expects a 1-D token sequence, got shape {ids.shape}")
        bad = np.flatnonzero((ids < 0) | (ids >= self.K))
        if bad.size:
            i = int(bad[0])
            raise DDSMInputError(
                f"token id {int(ids[i])} at 1-based position {i + 1} is outside alphabet "
                f"{self.name} (ids 0..{self.K - 1})"
            )
        return "".join(self.letters[i] for i in ids.tolist())

    def decode_batch(self, tokens: Any) -> list[str]:
        """Decode a batch of token rows.

        Args:
            tokens: ``(B, L)`` ids in ``[0, K)`` (numpy array, torch tensor or nested list).

        Returns:
            ``B`` strings of length ``L``.
        """
        ids = _as_int_array(tokens)
        if ids.ndim != 2:
            raise DDSMInputError(f"decode_batch expects (B, L) tokens, got shape {ids.shape}")
        return [self.decode(row) for row in ids]

    def to_config(self) -> dict[str, str]:
        """JSON-serialisable description; :meth:`from_config` inverts it."""
        return {"name": self.name, "letters": self.letters}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Alphabet:
        """Rebuild an alphabet saved by :meth:`to_config`."""
        if not isinstance(config, dict) or set(config) != {"name", "letters"}:
            got = sorted(config) if isinstance(config, dict) else type(config).__name__
            raise DDSMInputError(f"alphabet config needs exactly keys name, letters; got {got}")
        name, letters = config["name"], config["letters"]
        if not isinstance(name, str) or not isinstance(letters, str):
            raise DDSMInputError("alphabet config 'name' and 'letters' must be strings")
        return cls(name=name, letters=letters)


def _as_int_array(tokens: Any) -> np.ndarray:
    # Accept torch tensors without importing torch here: anything with .cpu() is moved to host
    # memory first (np.asarray of a CUDA tensor would fail).
    if hasattr(tokens, "detach") and hasattr(tokens, "cpu"):
        tokens = tokens.detach().cpu().numpy()
    ids = np.asarray(tokens)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DDSMInputError(f"token ids must be integers, got dtype {ids.dtype}")
    return ids.astype(np.int64, copy=False)


DNA = Alphabet("dna", "ACGT")
RNA = Alphabet("rna", "ACGU")
PROTEIN = Alphabet("protein", "ACDEFGHIKLMNPQRSTVWY")

#: name -> alphabet, for ``get_alphabet`` and the CLI's ``--alphabet``
NAMED_ALPHABETS: dict[str, Alphabet] = {a.name: a for a in (DNA, RNA, PROTEIN)}

# An unknown base is written N; without this, DNA containing N would look like protein (N is
# asparagine) because every letter of ACGTN is also an amino-acid letter.
_UNKNOWN_NUCLEOTIDE = "N"


def infer_alphabet(seqs: Sequence[str]) -> Alphabet:
    """Guess the alphabet from the letters used.

    DNA if every letter is in ACGT, else RNA if in ACGU, else protein if in the 20 amino acids,
    else a ``custom`` alphabet of the sorted distinct characters. ``N`` (unknown base) is ignored
    when every other letter is a nucleotide, so DNA with a few N still reads as DNA; encoding then
    decides what to do with the N (see ``encode_records(unknown=...)``).

    Raises:
        DDSMInputError: if there are no sequences, or fewer than two distinct letters in a
            non-biological alphabet.
    """
    if not seqs:
        raise DDSMInputError("cannot infer an alphabet from zero sequences")
    used: set[str] = set()
    for seq in seqs:
        used.update(seq)
    nucleotides = used - {_UNKNOWN_NUCLEOTIDE}
    for alphabet in (DNA, RNA):
        if nucleotides <= set(alphabet.letters):
            return alphabet
    if used <= set(PROTEIN.letters):
        return PROTEIN
    if len(used) < 2:
        raise DDSMInputError(
            f"cannot infer an alphabet: the sequences use only {sorted(used)!r}; "
            "pass an alphabet such as custom:LETTERS"
        )
    return Alphabet("custom", "".join(sorted(used)))


def get_alphabet(spec: str, sequences: Sequence[str] | None = None) -> Alphabet:
    """Resolve an ``--alphabet`` value.

    Args:
        spec: a name (``dna``, ``rna``, ``protein``; case-insensitive), ``custom:LETTERS`` (token
            order = letter order), or ``auto`` (infer from ``sequences``).
        sequences: the data, needed only for ``auto``.

    Raises:
        DDSMInputError: for an unknown name, bad custom letters, or ``auto`` without sequences.
    """
    if spec.startswith("custom:"):
        letters = spec[len("custom:") :]
        named = [a for a in NAMED_ALPHABETS.values() if a.letters == letters]
        return named[0] if named else Alphabet("custom", letters)
    key = spec.strip().lower()
    if key in NAMED_ALPHABETS:
        return NAMED_ALPHABETS[key]
    if key == "auto":
        if sequences is None:
            raise DDSMInputError("alphabet 'auto' needs sequences to infer the letters from")
        return infer_alphabet(sequences)
    choices = ", ".join([*NAMED_ALPHABETS, "auto", "custom:LETTERS"])
    raise DDSMInputError(f"unknown alphabet {spec!r}; choose one of {choices}")
