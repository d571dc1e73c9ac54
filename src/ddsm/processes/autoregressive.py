"""Left-to-right language model, the classic baseline, written as a process.

The "corruption" at public time t hides a suffix: the first n(t) = ceil((1 - t) L) positions hold
their tokens and the rest hold the id K ("not yet generated"). t = 1 is the all-hidden prior, t = 0
the data. The walk of the shared sampling loop over ``time_grid(steps)`` (uniform from 1 to 0)
therefore fills positions left to right:

- ``steps >= L``: at most one position per step, each drawn from the network's conditional
  p(x_i | x_<i): exact ancestral sampling (``steps = L``: one token per step, no wasted call);
- ``steps < L``: several positions per network call, all from the same forward pass, so a position
  is drawn without seeing the tokens drawn beside it in that step (they read as "not yet
  generated"). That is an approximation, offered only so the AR baseline runs at the same budgets
  as the diffusion processes; exact AR sampling at full speed is ``generate`` (KV cache).

Network: features are the state shifted right by one behind a BOS, one-hot over K + 1 classes (id
K is both BOS and "not yet generated"), so the causal network's output at position i sees
x_0 .. x_{i-1} only and predicts x_i (``out_channels = K`` logits). ``causal = True`` tells the CLI
to build a causal backbone.

Training is teacher-forced cross-entropy at every position. Time plays no part: ``sample_time``
returns t = 0, so ``sample_noisy`` hands the full sequence to the network; t exists only for the
shared contract. ``bits_per_token`` is the exact NLL from one teacher-forced pass.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ModelFn, NoisySample, Process, sample_categorical

#: logit of the true letter in ``oracle_output`` (softmax gives an exact point mass)
_ORACLE_LOGIT = 1e4
#: relative tolerance of n(t) = ceil((1 - t) L) against the float32 rounding of grid times
_FILL_TOL = 1e-5


class AutoregressiveProcess(Process):
    """Left-to-right LM: reveal tokens in order; each is drawn from p(x_i | x_<i)."""

    name = "autoregressive"
    description = "left-to-right language model (teacher forcing, exact likelihood, KV-cache generation)"
    state_kind = "tokens"
    causal = True

    def __init__(self, K: int, temperature: float = 1.0, top_k: int = 0) -> None:
        """
        Args:
            K: number of categories; id K marks "not yet generated" (and is the BOS input).
            temperature: sampling temperature (> 0; 0 means greedy argmax).
            top_k: sample among the k most likely letters only (0 = all).
        """
        super().__init__(K)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        self.temperature, self.top_k = float(temperature), int(top_k)

    # ------------------------------------------------------------------ clock
    def filled(self, t: Tensor, L: int) -> Tensor:
        """Number of revealed positions n(t) = ceil((1 - t) L), ``(B,)`` long in [0, L].

        A small tolerance absorbs the float32 rounding of grid times, so that the grid
        t_j = 1 - j / L gives exactly n = j.
        """
        n = torch.ceil((1.0 - t.double()) * L - _FILL_TOL * max(L, 1))
        return n.clamp(0, L).long()

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return self.K + 1

    @property
    def out_channels(self) -> int:
        return self.K

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        """One-hot ``(B, L, K + 1)`` of ``[BOS, x_0, .., x_{L-2}]`` (BOS = id K)."""
        bos = torch.full_like(xt[:, :1], self.K)
        shifted = torch.cat([bos, xt[:, :-1]], dim=1)
        return F.one_hot(shifted, self.K + 1).float()

    # ------------------------------------------------------------------ forward process
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        return torch.full(shape, self.K, dtype=torch.long, device=device)

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        """Keep the first n(t) tokens, hide the rest (deterministic)."""
        L = x0.shape[1]
        keep = torch.arange(L, device=x0.device)[None, :] < self.filled(t, L).to(x0.device)[:, None]
        return NoisySample(xt=torch.where(keep, x0, torch.full_like(x0, self.K)), t=t, target=x0)

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        """Teacher forcing: training always sees the whole sequence (t = 0)."""
        return torch.zeros(batch, device=device)

    # ------------------------------------------------------------------ training
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        return F.cross_entropy(output.float().transpose(1, 2), x0, reduction="none")

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return _ORACLE_LOGIT * F.one_hot(x0, self.K).float()

    # ------------------------------------------------------------------ reverse process
    def token_probs(self, logits: Tensor, temperature: Optional[float] = None,
                    top_k: Optional[int] = None) -> Tensor:
        """Sampling distribution ``(..., K)`` float64 from logits, with temperature and top-k
        (None: the process's own settings). Temperature 0 is a point mass on the argmax."""
        temperature = self.temperature if temperature is None else float(temperature)
        top_k = self.top_k if top_k is None else int(top_k)
        z = logits.double()
        if temperature == 0.0:
            return F.one_hot(z.argmax(-1), z.shape[-1]).double()
        z = z / temperature
        if 0 < top_k < z.shape[-1]:
            kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
            z = z.masked_fill(z < kth, -math.inf)
        return torch.softmax(z, dim=-1)

    def _draw(self, logits: Tensor, temperature: Optional[float], top_k: Optional[int],
              generator: Optional[torch.Generator]) -> Tensor:
        probs = self.token_probs(logits, temperature, top_k)
        if (self.temperature if temperature is None else temperature) == 0.0:
            return probs.argmax(-1)
        return sample_categorical(probs, generator=generator)

    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float | Tensor = 1.0) -> Tensor:
        """Draw the positions n(t) <= i < n(s) that are still hidden (fixed positions set by
        ``impose`` are kept), each from the network's output at that position."""
        self.check_dilation(dilation)
        B, L = xt.shape
        n_t, n_s = self.filled(t, L), self.filled(s, L)
        lo, hi = int(n_t.min()), int(n_s.max())
        if hi <= lo:
            return xt
        new = self._draw(output[:, lo:hi], None, None, generator)  # (B, hi - lo)
        pos = torch.arange(lo, hi, device=xt.device)[None, :]
        old = xt[:, lo:hi]
        write = (pos >= n_t.to(xt.device)[:, None]) & (pos < n_s.to(xt.device)[:, None]) & (old == self.K)
        out = xt.clone()
        out[:, lo:hi] = torch.where(write, new.to(xt.device), old)
        return out

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Set known positions to their tokens. A fixed token conditions the positions after it
        (it is their left context) but not those before it: left-to-right generation cannot look
        ahead. ``step`` never overwrites it."""
        return torch.where(known, x0, xt)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The prefix generated so far, completed by the argmax of the network's output at the
        positions still hidden (a greedy guess: those outputs condition on an incomplete prefix)."""
        return torch.where(xt == self.K, output.argmax(-1), xt)

    def decode(self, xt: Tensor) -> Tensor:
        """Tokens ``(B, L)``; a position not yet generated reads as 0 (a placeholder: the
        sampler fills every position by t = 0)."""
        return torch.where(xt == self.K, torch.zeros_like(xt), xt)

    def is_valid(self, xt: Tensor) -> bool:
        return (xt.dim() == 2 and xt.dtype == torch.long
                and bool(((xt >= 0) & (xt <= self.K)).all()))

    # ------------------------------------------------------------------ exact generation
    @torch.no_grad()
    def generate(self, model: ModelFn, shape: tuple[int, int], *, cond: Optional[Tensor] = None,
                 temperature: Optional[float] = None, top_k: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None,
                 use_cache: bool = True) -> Tensor:
        """Ancestral sampling, one position per network call: ``(B, L)`` long tokens.

        With a model that has ``forward_step`` (the causal transformer) and ``use_cache``, each
        call feeds one new token and reuses the keys/values of the prefix (O(L) work per token);
        otherwise the whole sequence is re-run at every position. Both draw the same random
        numbers as the sampling loop with ``steps = L``, so all three agree at a given seed.

        Args:
            shape: ``(B, L)``.
            cond: ``(B,)`` class ids or None.
            temperature, top_k: override the process's settings (None: keep them).
            device: where to generate (default: the model's parameters' device, else CPU).
        """
        B, L = shape
        if device is None:
            params = list(model.parameters()) if hasattr(model, "parameters") else []
            device = params[0].device if params else torch.device("cpu")
        tokens = self.prior(shape, device=device)
        cached = use_cache and hasattr(model, "forward_step")
        cache = None
        bos = torch.full((B,), self.K, dtype=torch.long, device=device)
        for i in range(L):
            if cached:
                prev = tokens[:, i - 1] if i > 0 else bos
                x_new = F.one_hot(prev, self.K + 1).float()[:, None, :]
                logits, cache = model.forward_step(x_new, i, cache, cond)
            else:
                t = torch.full((B,), 1.0 - i / L, device=device)
                logits = self.model_output(model, tokens, t, cond)[:, i : i + 1]
            tokens[:, i] = self._draw(logits, temperature, top_k, generator)[:, 0].to(device)
        return tokens

    # ------------------------------------------------------------------ likelihood
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100) -> Tensor:
        """Exact -log2 p(x0) per token, ``(B,)``, from one teacher-forced pass (``steps`` unused).

        With ``pad_mask`` the sum runs over real tokens and is divided by their number; padding
        is assumed to be a suffix (a causal model's real positions never see it then).
        """
        B, L = x0.shape
        t = torch.zeros(B, device=x0.device)
        with torch.no_grad():
            out = self.model_output(model, x0, t, cond)
        nll = F.cross_entropy(out.double().transpose(1, 2), x0, reduction="none")  # (B, L)
        if pad_mask is None:
            return nll.sum(-1) / (L * math.log(2.0))
        m = pad_mask.to(nll.dtype)
        return (nll * m).sum(-1) / (m.sum(-1).clamp_min(1.0) * math.log(2.0))
