"""Rewards for reward-guided sampling (``ddsm.sampling.smc``): batched functions of clean tokens.

Every reward maps ``tokens (B, L)`` long (the model's alphabet, end letters of variable-length
models included) to ``(B,)`` float64, larger = better. The temperature alpha of the tilt
exp(r / alpha) is in the reward's units, so each reward states its units:

- ``oracle``: log p(class | x) of a classifier (nats; the bundled oracle by default);
- ``margin``: the class logit minus the log-sum-exp of the other logits (nats);
- ``gc:TARGET``: minus the distance of the GC fraction from TARGET, in percentage points;
- ``motif:MOTIF`` / ``nomotif:MOTIF``: plus / minus the number of occurrences (the alphabet's
  motif semantics: IUPAC on both strands for DNA);
- any Python callable ``fn(list[str]) -> sequence of float`` on the decoded designs (API only).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.alphabet import Alphabet
from ..errors import DDSMInputError

RewardFn = Callable[[Tensor], Tensor]
REWARD_KINDS = ("oracle", "margin", "gc:TARGET", "motif:MOTIF", "nomotif:MOTIF")


def _strings(alphabet: Alphabet, tokens: Tensor) -> list[str]:
    return [alphabet.strip_end(s) for s in alphabet.decode_batch(tokens.cpu())]


def classifier_reward(fn: Callable[[Tensor], Tensor], K: int, target: int, kind: str = "oracle") -> RewardFn:
    """log p(target | x) (``kind="oracle"``) or the target's logit margin (``"margin"``) of a
    classifier on one-hot rows, ``fn(x (B, L, K)) -> logits (B, C)``."""

    @torch.no_grad()
    def reward(tokens: Tensor) -> Tensor:
        logits = fn(F.one_hot(tokens, K).float()).double()
        if kind == "margin":
            others = torch.cat([logits[:, :target], logits[:, target + 1:]], dim=1)
            return (logits[:, target] - torch.logsumexp(others, dim=1)).cpu()
        return torch.log_softmax(logits, dim=1)[:, target].cpu()

    return reward


def gc_reward(alphabet: Alphabet, target: float) -> RewardFn:
    """-|GC fraction - target| x 100 (percentage points)."""
    if not alphabet.has_gc:
        raise DDSMInputError(f"reward gc needs a DNA or RNA model; this model's alphabet is {alphabet.name}")
    if not 0.0 <= target <= 1.0:
        raise DDSMInputError(f"reward gc:{target}: the target GC fraction must be in [0, 1]")

    def reward(tokens: Tensor) -> Tensor:
        seqs = _strings(alphabet, tokens)
        gc = torch.tensor([(s.count("G") + s.count("C")) / max(1, len(s)) for s in seqs], dtype=torch.float64)
        return -100.0 * (gc - target).abs()

    return reward


def motif_reward(alphabet: Alphabet, motif: str, sign: float = 1.0) -> RewardFn:
    """``sign`` x the number of occurrences of ``motif`` (both strands for nucleotides)."""
    from ..constraints.motifs import ForbiddenMotifs

    scan = ForbiddenMotifs.parse([motif], alphabet=alphabet)

    def reward(tokens: Tensor) -> Tensor:
        return sign * torch.tensor([len(scan.hits(s)) for s in _strings(alphabet, tokens)], dtype=torch.float64)

    return reward


def callable_reward(alphabet: Alphabet, fn: Callable[[list[str]], Sequence[float]]) -> RewardFn:
    """A user's ``fn(list of designs) -> one float each``, called once per batch."""

    def reward(tokens: Tensor) -> Tensor:
        seqs = _strings(alphabet, tokens)
        values = torch.as_tensor([float(v) for v in fn(seqs)], dtype=torch.float64)
        if values.shape != (len(seqs),):
            raise DDSMInputError(f"the reward function returned {tuple(values.shape)} values for {len(seqs)} designs")
        return values

    return reward


def parse_reward(spec: Any, alphabet: Alphabet, *, classifier: Optional[Any] = None,
                 class_name: Optional[str] = None) -> RewardFn:
    """A reward from its CLI spelling (see the module docstring) or a Python callable.

    Args:
        classifier: a :class:`ddsm.guidance.Classifier` for ``oracle`` / ``margin``.
        class_name: the class those rewards aim at.
    """
    if callable(spec):
        return callable_reward(alphabet, spec)
    if not isinstance(spec, str) or not spec:
        raise DDSMInputError(f"--reward {spec!r}: choose one of {', '.join(REWARD_KINDS)}")
    kind, _, arg = spec.partition(":")
    if kind in ("oracle", "margin"):
        if classifier is None:
            raise DDSMInputError(f"--reward {kind} needs an oracle (--reward-oracle DIR, or a bundled model)")
        if alphabet.end or alphabet.K != len(classifier.alphabet or alphabet.letters):
            raise DDSMInputError(f"--reward {kind}: the oracle reads {classifier.alphabet}, the model writes "
                                 f"{alphabet.letters}")
        return classifier_reward(classifier.fn, alphabet.K, classifier.target(class_name), kind)
    if kind == "gc":
        try:
            return gc_reward(alphabet, float(arg))
        except ValueError:
            raise DDSMInputError(f"--reward gc:TARGET needs a GC fraction, e.g. gc:0.45; got {spec!r}") from None
    if kind in ("motif", "nomotif"):
        if not arg:
            raise DDSMInputError(f"--reward {kind}:MOTIF needs a motif, e.g. {kind}:TATAAA")
        return motif_reward(alphabet, arg, 1.0 if kind == "motif" else -1.0)
    raise DDSMInputError(f"--reward {spec!r}: choose one of {', '.join(REWARD_KINDS)}")
