"""The contract every corruption process implements.

A process is the *maths* of one method: how data are corrupted (``sample_noisy``), what the
network is trained to output (``loss_terms``), and how one reverse update is made from the
network's output (``step``). It owns no network and no sampling loop: the loop in
``ddsm.sampling.loop`` drives any process, and the backbones in ``ddsm.models`` serve any process.

Conventions (see docs/design.md):

- Public time ``t`` lies in [0, 1]; t = 0 is data, t = 1 is the prior. A process with a native clock
  converts inside itself.
- Data tokens ``x0`` are ``LongTensor (B, L)`` with values in [0, K).
- The state ``xt`` is declared by ``state_kind``: ``"tokens"`` ``(B, L)`` long (a mask token, if any,
  has id K), ``"simplex"`` ``(B, L, K)`` float rows summing to 1, ``"bits"`` ``(B, L, C)`` float.
- Every function that draws takes a keyword-only ``generator``; nothing seeds globally.
- ``pad_mask`` ``(B, L)`` bool, True = real token.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Optional, Sequence

import torch
from torch import Tensor

from .. import rng as _rng
from ..models.base import takes_raw_state

#: ``model(features (B, L, C_in), t (B,), cond (B,) | None) -> output (B, L, C_out)``
ModelFn = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]


@dataclass
class NoisySample:
    """A corrupted batch and whatever the loss needs to score the model on it.

    Attributes:
        xt: the state at time t (shape per ``state_kind``).
        t: ``(B,)`` public time in [0, 1].
        target: the regression/classification target, process specific (may be None).
        extras: other per-sample tensors a process wants to carry (weights, self-conditioning...).
    """

    xt: Tensor
    t: Tensor
    target: Optional[Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class FixedPositions:
    """Positions whose tokens are given (inpainting, Sudoku givens, ``--fixed`` patterns).

    Part of the process contract (samplers that a process owns, such as the masked process's
    first-hitting sampler, take it), so it lives here; ``ddsm.sampling`` re-exports it.

    Attributes:
        tokens: ``(B, L)`` long, the known tokens (any value where ``mask`` is False).
        mask: ``(B, L)`` bool, True where the token is fixed.
    """

    tokens: Tensor
    mask: Tensor


@dataclass
class LossOutput:
    """Scalar training loss plus the per-token terms it was averaged from.

    Attributes:
        loss: scalar to back-propagate.
        terms: ``(B, L)`` per-token loss terms (zero at padding).
    """

    loss: Tensor
    terms: Tensor


class Process(ABC):
    """A forward corruption of K-ary sequences and its learned reverse. t = 0 data, t = 1 prior.

    Subclasses set ``name``, ``description``, ``state_kind`` and implement the abstract methods.
    The constructor's keyword arguments are the process's configuration: ``config()`` returns
    them, ``from_config`` rebuilds the process, and ``ddsm list processes`` prints them.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    state_kind: ClassVar[str]
    #: whether ``step`` is an SDE/ODE step that time dilation (``dilation`` > 1) makes sense for
    supports_dilation: ClassVar[bool] = False
    #: whether the network should be causal (left-to-right processes)
    causal: ClassVar[bool] = False
    #: how classifier guidance edits this process's network output (``ddsm.guidance.classifier``
    #: keeps one form per value, none per process): None = not guidable (discrete states have no
    #: gradient to follow); ``"posterior-logits"``: the output is logits ``(B, L, K)`` of
    #: p(x0 | xt), tilted by w * grad log p(y | x) at the posterior mean; ``"stick-score"``: the
    #: normalised stick score of the jacobi process (needs ``native_time`` and
    #: ``output_from_score``); ``"analog-bits"``: the x0 estimate of analog bits (needs ``clip``,
    #: ``scale``, ``encoding`` and ``codes``, as ``BitsProcess``).
    classifier_guidance: ClassVar[Optional[str]] = None
    #: the samplers this process has. ``"ancestral"`` is the shared grid loop
    #: (``ddsm.sampling.sample`` calling ``step``); any other name is one of the process's own
    #: samplers, run by :meth:`sample_with`. The default is :attr:`default_sampler`.
    samplers: ClassVar[tuple[str, ...]] = ("ancestral",)
    #: whether ``bits_per_token`` takes ``t_start``, the native time where an ODE bound starts
    #: (the jacobi process); ``ddsm.api.score`` passes it only then
    likelihood_t_start: ClassVar[bool] = False
    #: the likelihood bounds ``bits_per_token(bound=...)`` offers, default first (empty: the
    #: process has one and takes no ``bound``); ``ddsm.api.score`` checks a requested one here
    likelihood_bounds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, K: int) -> None:
        if K < 2:
            raise ValueError(f"a process needs K >= 2 categories, got {K}")
        self.K = int(K)

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-serialisable, such that ``type(self)(**config)`` rebuilds it."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in sig.parameters if name != "self"}

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Saved options of an older version -> options of this one (default: unchanged)."""
        return dict(options)

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Constructor options other than K, with their defaults (for help texts)."""
        sig = inspect.signature(cls.__init__)
        return {
            n: (p.default if p.default is not inspect.Parameter.empty else None)
            for n, p in sig.parameters.items()
            if n not in ("self", "K")
        }

    # ------------------------------------------------------------------ network interface
    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Number of float features per position that ``model_input`` produces."""

    @property
    @abstractmethod
    def out_channels(self) -> int:
        """Number of outputs per position the network must produce."""

    @abstractmethod
    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        """Features for the network.

        Args:
            xt: state (shape per ``state_kind``).
            t: ``(B,)`` public time.
        Returns:
            ``(B, L, in_channels)`` float tensor.
        """

    def model_output(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Call the network on a state; processes may post-process its raw output here.

        A model declared to take the raw state (:func:`ddsm.models.base.takes_raw_state`: the
        oracles of the contract tests, output caches) gets the raw state instead of the features.
        """
        if takes_raw_state(model):
            return model(xt, t, cond)
        return model(self.model_input(xt, t), t, cond)

    # ------------------------------------------------------------------ forward process
    @abstractmethod
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        """Draw a state from the prior (t = 1) for ``shape = (B, L)``."""

    @abstractmethod
    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        """Draw ``xt ~ q(xt | x0)``.

        Args:
            x0: ``(B, L)`` long tokens.
            t: ``(B,)`` public time in [0, 1].
        """

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        """Training times ``(B,)``; default: antithetic-stratified uniform on [0, 1]."""
        u = _rng.rand((), generator=generator, device=device, dtype=torch.float64)
        t = (u + torch.arange(batch, device=u.device, dtype=torch.float64) / batch) % 1.0
        return t.float()

    # ------------------------------------------------------------------ training
    @abstractmethod
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        """Per-token loss ``(B, L)`` of the network ``output`` on ``noisy``. Pure."""

    def loss(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
             pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> LossOutput:
        """Template training loss: draw t, corrupt, call the model, average the terms over real tokens."""
        t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        noisy = self.sample_noisy(x0, t, generator=generator)
        output = self.model_output(model, noisy.xt, noisy.t, cond)
        terms = self.loss_terms(output, x0, noisy)
        return reduce_terms(terms, pad_mask)

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The output a perfect network would give when the data distribution is a point mass at x0.

        Used by the contract tests to check ``step`` without training.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ reverse process
    def time_grid(self, steps: int, *, device: Optional[torch.device] = None) -> Tensor:
        """``(steps + 1,)`` decreasing public times from 1 to the end time."""
        return torch.linspace(1.0, 0.0, steps + 1, device=device)

    def sampling_model(self, model: "ModelFn") -> "ModelFn":
        """The network as one run of the sampling loop calls it (the loop asks once per run, before
        its first step). A process whose sampler keeps a memory of past network outputs across a
        run (the Jacobi process's multistep correction) wraps ``model`` here in a fresh object,
        so that ``step`` stays a pure function of one output. Default: ``model`` unchanged."""
        return model

    def prepare_steps(self, pairs: Sequence[tuple[Tensor, Tensor, float]]) -> None:
        """Called by a sampling loop, before its first step, with every ``(t, s, c)`` it will
        step (public times, 0-dim, and the dilation; ``ddsm.sampling.loop.dilated_pairs``), so a
        process can build per-time tables in one go. No state is changed that ``step`` reads as
        input: skipping it changes speed, never results. Nothing to do by default."""
        return None

    @abstractmethod
    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """One reverse update from time ``t`` to ``s < t`` given the network's ``output`` at (xt, t).

        Every argument a sampling loop passes is named here (the loops call
        ``step(out, xt, t, s, generator=..., dilation=...)``), so a process cannot miss one.

        Args:
            output: the network's output at ``(xt, t)`` (after ``model_output`` and any hook).
            xt: the state at ``t`` (shape per ``state_kind``).
            t, s: ``(B,)`` public times, ``s < t``.
            generator: the source of every random draw.
            dilation: DDSM time dilation c >= 1, a float or ``(B,)`` per row: the state moves by c
                times the model-time step ``t - s``. Only a process with ``supports_dilation``
                honours it; the others call :meth:`check_dilation` first, which refuses c != 1.
        Returns:
            the state at ``s``. Pure apart from the random draw.
        """

    def check_dilation(self, dilation: float | Tensor) -> None:
        """Refuse a time dilation this process cannot apply (``dilation`` a float or ``(B,)``).

        The one place where ``supports_dilation`` is enforced: a ``step`` without dilation calls it
        rather than silently ignoring the argument. Raises ``ValueError`` when ``dilation`` differs
        from 1 and the process does not declare ``supports_dilation``.
        """
        if self.supports_dilation:
            return
        other = (bool((dilation != 1.0).any()) if isinstance(dilation, Tensor) else float(dilation) != 1.0)
        if other:
            raise ValueError(f"process {self.name!r} does not support time dilation (got dilation "
                             f"{dilation if not isinstance(dilation, Tensor) else 'per row'}); only processes with "
                             f"supports_dilation do, e.g. 'jacobi'")

    # ------------------------------------------------------------------ samplers
    @property
    def default_sampler(self) -> str:
        """The sampler used when none is asked for: the first of ``samplers`` (a process with a
        ``sampler`` option returns the configured one)."""
        return self.samplers[0]

    def resolve_sampler(self, sampler: Optional[str] = None) -> str:
        """``sampler`` (None: :attr:`default_sampler`) checked against ``samplers``.

        Raises ``ValueError`` (one line naming the process's samplers) for a name it lacks.
        """
        name = self.default_sampler if sampler is None else str(sampler)
        if name not in self.samplers:
            raise ValueError(f"process {self.name!r} has no sampler {name!r}; its samplers: "
                             f"{', '.join(self.samplers)}")
        return name

    def sample_with(self, sampler: str, model: ModelFn, shape: tuple[int, int], *,
                    cond: Optional[Tensor] = None, fixed: Optional[FixedPositions] = None,
                    output_hook: Optional[Callable[[Tensor, Tensor, Tensor], Tensor]] = None,
                    generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None,
                    progress: Optional[Callable[[Iterable], Iterable]] = None) -> Tensor:
        """Run one of this process's own samplers (a name in ``samplers`` other than
        ``"ancestral"``, which the shared loop runs) and return ``(B, L)`` long tokens for
        ``shape = (B, L)``. Arguments as :func:`ddsm.sampling.sample`; ``output_hook`` is called
        with the network output, the state and the per-row times ``(B,)``.

        Default: there is none, so it raises ``ValueError``.
        """
        raise ValueError(f"process {self.name!r} has no sampler {sampler!r} of its own; its samplers: "
                         f"{', '.join(self.samplers)}")

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Set the known positions (``known`` ``(B, L)`` bool) of the state to their values in ``x0``.

        Args:
            xt: the state at ``t`` (shape per ``state_kind``).
            x0: ``(B, L)`` long, the known tokens (any value where ``known`` is False).
            known: ``(B, L)`` bool.
            t: ``(B,)`` public time.
        Returns:
            the state with the known positions imposed, valid at ``t``.

        No default: how tokens are written into a state is process specific (a clean one-hot is
        not a valid state of every process at every t: the jacobi process draws q(v | x0) instead,
        analog bits draw z_t), so this raises ``NotImplementedError`` (a sampling loop given fixed
        positions for such a process stops with it). Every registered process implements it (``jacobi``, ``masked``,
        ``uniform``, ``discrete-fm``, ``dirichlet-fm``, ``bits``, ``autoregressive``; the contract
        test ``test_fixed_positions_preserved`` checks each).
        """
        raise NotImplementedError(f"process {self.name!r} cannot impose fixed positions")

    @abstractmethod
    def decode(self, xt: Tensor) -> Tensor:
        """Read tokens ``(B, L)`` long off a state."""

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The clean sequence ``(B, L)`` long that the network's ``output`` at ``(xt, t)`` predicts
        (argmax of its x0 prediction; known tokens of the state as they are). Reward-guided
        sampling scores particles by it (``ddsm.sampling.smc``).

        Default: the tokens the state reads as (``decode``); processes with an x0 prediction
        override it.
        """
        return self.decode(xt)

    @abstractmethod
    def is_valid(self, xt: Tensor) -> bool:
        """Whether ``xt`` is a valid state of this process (shape, dtype, domain)."""

    # ------------------------------------------------------------------ likelihood
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100) -> Tensor:
        """Per-sequence negative log-likelihood (or its upper bound) in bits per token, ``(B,)``."""
        raise NotImplementedError(f"{self.name} has no likelihood")


def reduce_terms(terms: Tensor, pad_mask: Optional[Tensor]) -> LossOutput:
    """Average ``(B, L)`` loss terms over real tokens."""
    if pad_mask is None:
        return LossOutput(terms.mean(), terms)
    m = pad_mask.to(terms.dtype)
    terms = terms * m
    return LossOutput(terms.sum() / m.sum().clamp_min(1.0), terms)


def sample_categorical(probs: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw one index per row of ``probs (..., K)`` in float64 (float32 Gumbel draws lower the
    effective temperature, see Zheng et al. 2024). Rows need not be normalised."""
    p = probs.double().clamp_min(0.0)
    flat = p.reshape(-1, p.shape[-1])
    idx = _rng.multinomial(flat, 1, generator=generator).squeeze(-1)
    return idx.reshape(p.shape[:-1])
