"""Alphabets: the map between letters and token ids ``0 .. K-1``, and what the letters mean.

An alphabet is an ordered string of distinct letters; token id ``i`` is ``letters[i]``. It is
saved beside a checkpoint as ``{"name": ..., "letters": ...}`` so that sampling decodes with exactly
the alphabet the model was trained on.

The alphabet, not the caller, also decides the semantics that constraints and readers depend on
(the README's input section has the table):

| alphabet | ambiguity codes | reverse complement | free symbol of ``--fixed`` | ``--forbid`` | ``--gc`` |
|---|---|---|---|---|---|
| ``dna`` / ``rna`` | IUPAC (R Y S W K M B D H V N) | yes | ``N`` or ``.`` | IUPAC-expanded, both strands | yes |
| ``protein`` | B Z J X (for ``--unknown random``) | no | ``.`` ``-`` ``X`` | literal | refused |
| ``custom`` | none | no | ``.`` ``-`` (those not letters) | literal | refused |
"""

from __future__ import annotations

import re
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
    #: the end-of-sequence letter of variable-length models ("" = fixed length); always the last
    #: of ``letters``, so token id ``K - 1``: a design ends at its first end letter and the
    #: positions after it are end letters too (right padding that the model learns)
    end: str = ""

    def __post_init__(self) -> None:
        if self.end and (len(self.end) != 1 or not self.letters.endswith(self.end)):
            raise DDSMInputError(f"alphabet {self.name!r}: end letter {self.end!r} must be its last letter")
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

    @property
    def symbols(self) -> str:
        """The sequence letters, without the end letter."""
        return self.letters[:-1] if self.end else self.letters

    @property
    def end_id(self) -> int:
        """Token id of the end letter (-1 for fixed-length alphabets)."""
        return self.K - 1 if self.end else -1

    def with_end(self) -> "Alphabet":
        """The same alphabet plus an end-of-sequence letter (the first of ``- * _ $ ~`` that is not
        a letter), for variable-length models."""
        if self.end:
            return self
        char = next(c for c in "-*_$~" if c not in self.letters)
        return Alphabet(self.name, self.letters + char, end=char)

    def strip_end(self, seq: str) -> str:
        """A decoded row up to its first end letter (the whole row for fixed-length alphabets)."""
        if not self.end:
            return seq
        i = seq.find(self.end)
        return seq if i < 0 else seq[:i]

    @property
    def is_nucleotide(self) -> bool:
        """DNA or RNA: IUPAC codes, reverse complements and GC content mean something."""
        return self.name in _NUCLEOTIDE_NAMES

    @property
    def has_gc(self) -> bool:
        """Whether a GC-content window is meaningful (nucleotides only)."""
        return self.is_nucleotide

    @property
    def has_reverse_complement(self) -> bool:
        return self.is_nucleotide

    @cached_property
    def ambiguity_codes(self) -> dict[str, str]:
        """Ambiguity letter -> the letters of this alphabet it stands for (its own letters included
        as themselves). IUPAC for nucleotides (``T`` and ``U`` both read as the alphabet's
        T/U letter), B/Z/J/X for proteins, nothing for custom alphabets."""
        if self.is_nucleotide:
            t = "U" if "U" in self.letters else "T"
            codes = {k: v.replace("T", t) for k, v in _IUPAC.items()}
            codes["U"] = codes["T"] = t
            return codes
        if self.name == "protein":
            return {**{c: c for c in self.symbols}, **{k: (v if v else self.symbols)
                                                        for k, v in _PROTEIN_AMBIGUITY.items()}}
        return {c: c for c in self.symbols}

    @cached_property
    def free_symbols(self) -> tuple[str, ...]:
        """Symbols that mark a free (unconstrained) position in a ``--fixed`` pattern."""
        wanted = ("N", ".") if self.is_nucleotide else (".", "-", "X") if self.name == "protein" else (".", "-")
        return tuple(c for c in wanted if c not in self.letters)

    def motif_regex(self, motif: str) -> str:
        """A regular expression matching ``motif`` in this alphabet's sequences.

        Nucleotides: IUPAC codes expand to character classes (``GANTC`` -> ``GA[ACGT]TC``).
        Proteins and custom alphabets: literal letters (``KK`` is two lysines, not ``[GT][GT]``).

        Raises:
            DDSMInputError: a letter that is neither a letter of the alphabet nor (nucleotides) an
                IUPAC code.
        """
        codes = self.ambiguity_codes if self.is_nucleotide else {c: c for c in self.symbols}
        parts = []
        for c in motif:
            if c not in codes:
                kind = "IUPAC nucleotide codes" if self.is_nucleotide else f"letters of {self.symbols}"
                raise DDSMInputError(f"motif {motif!r}: letter {c!r} is not allowed; {self.name} motifs use {kind}")
            allowed = codes[c]
            parts.append(re.escape(allowed) if len(allowed) == 1 else "[" + re.escape(allowed) + "]")
        return "".join(parts)

    def reverse_complement(self, motif: str) -> str:
        """Reverse complement of a nucleotide motif (IUPAC codes map to their complements).

        Raises:
            DDSMInputError: the alphabet has no complement (proteins, custom alphabets).
        """
        if not self.is_nucleotide:
            raise DDSMInputError(f"alphabet {self.name} has no reverse complement")
        t = "U" if "U" in self.letters else "T"
        return motif.translate(_IUPAC_COMPLEMENT).replace("T", t).replace("U", t)[::-1]

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
        return {"name": self.name, "letters": self.letters, **({"end": self.end} if self.end else {})}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Alphabet:
        """Rebuild an alphabet saved by :meth:`to_config`."""
        if not isinstance(config, dict) or not {"name", "letters"} <= set(config) <= {"name", "letters", "end"}:
            got = sorted(config) if isinstance(config, dict) else type(config).__name__
            raise DDSMInputError(f"alphabet config needs keys name, letters (and optionally end); got {got}")
        name, letters, end = config["name"], config["letters"], config.get("end", "")
        if not all(isinstance(v, str) for v in (name, letters, end)):
            raise DDSMInputError("alphabet config 'name', 'letters' and 'end' must be strings")
        return cls(name=name, letters=letters, end=end)


def _as_int_array(tokens: Any) -> np.ndarray:
    # Accept torch tensors without importing torch here: anything with .cpu() is moved to host
    # memory first (np.asarray of a CUDA tensor would fail).
    if hasattr(tokens, "detach") and hasattr(tokens, "cpu"):
        tokens = tokens.detach().cpu().numpy()
    ids = np.asarray(tokens)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DDSMInputError(f"token ids must be integers, got dtype {ids.dtype}")
    return ids.astype(np.int64, copy=False)


_NUCLEOTIDE_NAMES = ("dna", "rna")
_IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT",
          "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT"}
_IUPAC_COMPLEMENT = str.maketrans("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN")
# B = D/N, Z = E/Q, J = I/L, X = any ("" = every letter); U (selenocysteine) and O (pyrrolysine)
# have no standard residue to stand for, so they stay unknown letters.
_PROTEIN_AMBIGUITY = {"B": "DN", "Z": "EQ", "J": "IL", "X": ""}

DNA = Alphabet("dna", "ACGT")
RNA = Alphabet("rna", "ACGU")
PROTEIN = Alphabet("protein", "ACDEFGHIKLMNPQRSTVWY")

#: name -> alphabet, for ``get_alphabet`` and the CLI's ``--alphabet``
NAMED_ALPHABETS: dict[str, Alphabet] = {a.name: a for a in (DNA, RNA, PROTEIN)}

# The share of plain bases (ACGT / ACGU) from which data whose letters all are IUPAC codes read as
# nucleotides. A protein written only in letters that are also IUPAC codes (A C D G H K M N R S T V
# W Y) has far fewer: plain bases are ~30 % of residues in natural proteins.
_MIN_PLAIN_BASES = 0.75


def _letter_counts(seqs: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for seq in seqs:
        for c in set(seq):
            counts[c] = counts.get(c, 0) + seq.count(c)
    return counts


def infer_alphabet(seqs: Sequence[str]) -> Alphabet:
    """Infer a standard alphabet from the letters used; never guesses a custom one.

    - DNA (RNA) when every letter is a base or an IUPAC ambiguity code (``N``, ``R``, ``Y``...)
      and at least 75 % of the letters are plain bases ACGT (ACGU): a few ambiguous bases do not
      turn DNA into protein. Encoding decides what happens to the codes (``--unknown``).
    - protein when every letter is one of the 20 amino acids or B/Z/J/X/U/O.
    - anything else is an error: pass ``custom`` (the sorted distinct letters) or
      ``custom:LETTERS`` to :func:`get_alphabet` to model arbitrary symbols.

    Raises:
        DDSMInputError: no sequences, or letters that fit no standard alphabet.
    """
    if not seqs:
        raise DDSMInputError("cannot infer an alphabet from zero sequences")
    counts = _letter_counts(seqs)
    used = set(counts)
    total = sum(counts.values())
    for alphabet in (DNA, RNA):
        other = "U" if alphabet is DNA else "T"
        if used <= set(alphabet.ambiguity_codes) and other not in used:
            plain = sum(counts.get(c, 0) for c in alphabet.letters)
            if plain >= _MIN_PLAIN_BASES * total:
                return alphabet
    if used <= set(PROTEIN.letters) | set("BZJXUO"):
        return PROTEIN
    odd = sorted(used - set(PROTEIN.letters) - set(_IUPAC) - set("BZJXUO"))
    raise DDSMInputError(
        f"the sequences use letters that fit no standard alphabet ({', '.join(map(repr, odd[:8]))}); "
        "pass --alphabet custom to model every distinct letter, or --alphabet custom:LETTERS"
    )


def describe_inference(alphabet: Alphabet, seqs: Sequence[str]) -> str:
    """One line for stderr saying what was inferred and which letters are not in it."""
    counts = _letter_counts(seqs)
    extra = sorted(c for c in counts if c not in alphabet.letters)
    line = f"inferred alphabet {alphabet.name} ({alphabet.letters}) from the letters used"
    if extra:
        n = sum(counts[c] for c in extra)
        kind = "ambiguity codes" if all(c in alphabet.ambiguity_codes for c in extra) else "unknown letters"
        line += f"; {n} letters are {kind} ({', '.join(extra)}), handled by --unknown"
    return line + "; pass --alphabet to choose another"


def get_alphabet(spec: str, sequences: Sequence[str] | None = None) -> Alphabet:
    """Resolve an ``--alphabet`` value.

    Args:
        spec: a name (``dna``, ``rna``, ``protein``; case-insensitive), ``custom:LETTERS`` (token
            order = letter order), ``custom`` (the sorted distinct letters of ``sequences``), or
            ``auto`` (infer a standard alphabet from ``sequences``).
        sequences: the data, needed only for ``auto`` and ``custom``.

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
    if key in ("auto", "custom"):
        if sequences is None:
            raise DDSMInputError(f"alphabet {key!r} needs sequences to infer the letters from")
        if key == "auto":
            return infer_alphabet(sequences)
        letters = "".join(sorted(_letter_counts(sequences)))
        if len(letters) < 2:
            raise DDSMInputError(f"alphabet 'custom': the sequences use only {letters!r}; a model needs 2 letters")
        return Alphabet("custom", letters)
    choices = ", ".join([*NAMED_ALPHABETS, "auto", "custom", "custom:LETTERS"])
    raise DDSMInputError(f"unknown alphabet {spec!r}; choose one of {choices}")
