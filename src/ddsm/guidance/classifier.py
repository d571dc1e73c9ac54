r"""Classifier (oracle) guidance for the simplex processes (``jacobi``, ``dirichlet-fm``) and ``bits``.

A differentiable classifier ``clf(x (B, L, K) probability rows) -> logits (B, C)`` (by default the
bundled oracle CNN of the run's data set, :meth:`ddsm.metrics.oracle.Oracle.soft_logits`) steers
sampling toward class y: the target is p(x0 | y) proportional to p(x0) p(y | x0)^w. The guidance
is an ``output_hook`` of the sampling loop (:func:`ddsm.sampling.sample`), applied to the network's
output *after* any classifier-free-guidance wrapper, so the two compose. Every form below adds
w g in the process's own output space, with g the gradient of log p(y | x_hat) at the process's
current estimate x_hat; w = 0 installs no hook, so it reproduces unguided samples byte for byte.

jacobi (default, output="posterior": network output = logits of the per-position clean-token
posterior p(x0 | v), from which the reverse SDE's score follows by the mixture identity). The
posterior is what conditioning on y reweights, p(x0 | v, y) ~ p(x0 | v) p(y | x0)^w, exactly as for
dirichlet-fm below: l' = l + w g with g at the posterior mean; the guided posterior then gives the
guided mixture score.

jacobi with output="score" (network output: the normalised stick score o_i = sqrt(v_i (1 - v_i) / lambda_i(tau)) s_i,
s = d/dv log p_tau(v)). Guidance in score space (Dhariwal & Nichol): the score of
p_tau(v | y) ~ p_tau(v) p(y | v)^w is s + w d/dv log p(y | v). There is no denoised estimate to
read off a score network, so the clean classifier sees the current simplex point x = SB(v) (the
network's own input) and the chain rule through stick-breaking gives

    d/dv log p(y | x(v)) = J^T g,   g = d/dx log p(y | x),   J = dx/dv,
    (J^T g)_i = R_i g_i - (R_i / R_{i+1}) sum_{k>i} x_k g_k,   R_i = prod_{j<i} (1 - v_j)

(``special.stickbreaking.pullback_x_to_v``; no log-det term: p(y | x) is a function of the point,
not a density). Normalised like the output, o' = o + w sqrt(v (1 - v) / lambda(tau)) * J^T g; the
reverse SDE's drift is linear in the score, so this is exactly the guided reverse SDE.

dirichlet-fm (network output: logits l of the per-position posterior pi = p(x1 | x_alpha); field
v(x) = sum_k pi_k u(x | e_k)). u(x | x1) does not depend on y, so conditioning on y only replaces
pi by p(x1 | x_alpha, y) ~ p(x1 | x_alpha) p(y | x1)^w. Linearise the classifier at the posterior
mean E[x1 | x_alpha] = pi:

    log p(y | x1) ~ log p(y | pi) + sum_l <g_l, x1_l - pi_l>,   g = d/dx log p(y | x) at x = pi;

the reweighted posterior then factorises over positions again, p(x1_l = e_k | x, y) ~
pi_lk exp(w g_lk), i.e. l' = l + w g (a per-position constant in g cancels in the softmax). With
w = 1 it is the first-order Bayes posterior; the final argmax read-out uses it too.

bits (network output: x0_hat = E[c | z_t], codes c in {-s, +s}^C; eps_hat = (z - alpha x0_hat) /
sigma). Dhariwal & Nichol shift the noise prediction, eps' = eps_hat - w sigma_t d/dz log p(y | z_t),
which by Tweedie's formula is x0' = x0_hat + w (sigma_t^2 / alpha_t) d/dz log p(y | z_t). The clean
classifier sees the decoded probabilities P(x0_hat) (binary codes: independent bits with
P(bit = 1) = (1 + x0_hat / s) / 2, renormalised over the K valid codes; one-hot: P_k ~
(1 + x0_hat_k / s) / 2), so d/dz log p(y | z) = (dx0_hat/dz)^T g with g = d/dx0_hat log p(y | P(x0_hat)).
Tweedie's second-order identity gives dx0_hat/dz = (alpha / sigma^2) Cov[c | z]; with the channels
independent given z (each +-s with mean x0_hat), Cov = diag(s^2 - x0_hat^2). Hence

    x0' = x0_hat + w (s^2 - x0_hat^2) * g,   eps' = eps_hat - w (alpha_t / sigma_t) (s^2 - x0_hat^2) * g.

The time factors cancel: the shift is largest where a bit is undecided and vanishes where it is
(|x0_hat| = s); it is the first-order tilt of the factorised code posterior by p(y | c)^w, the same
idea as the dirichlet-fm form. The step clips x0' to the code box and feeds it back through
self-conditioning.

Which form applies is declared by the process itself (``Process.classifier_guidance``:
``"posterior-logits"``, ``"stick-score"`` or ``"analog-bits"``), so a new process that shares one
of these output spaces needs no edit here. Processes declaring None (discrete states) have no
gradient to follow: :class:`ClassifierGuidance` refuses them with a :class:`DDSMInputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import Tensor

from ..errors import DDSMInputError
from ..processes import PROCESSES
from ..processes.base import Process
from ..processes.bits import BitsProcess
from ..processes.jacobi_score import JacobiScoreProcess
from ..special.stickbreaking import pullback_x_to_v, sticks_to_simplex
from .cfg import check_interval, in_interval

if TYPE_CHECKING:
    from ..metrics.oracle import Oracle

#: ``clf(x (B, L, K) probability rows) -> logits (B, C)``, differentiable in x
ClassifierFn = Callable[[Tensor], Tensor]

#: floor of decoded bit probabilities (keeps log finite; the (s^2 - x0^2) factor is ~0 there)
_P_FLOOR = 1e-6


@dataclass
class Classifier:
    """A differentiable classifier with the facts needed to apply it.

    Attributes:
        fn: ``fn(x (B, L, K)) -> logits (B, C)``, rows of x are probabilities over the letters.
        classes: C class names, index = logit index.
        alphabet: the letters in the order of x's last axis (checked against the run's), or None.
        name: for messages.
    """

    fn: ClassifierFn
    classes: list[str]
    alphabet: Optional[str] = None
    name: str = "classifier"

    @classmethod
    def from_oracle(cls, oracle: "Oracle") -> "Classifier":
        return cls(oracle.soft_logits, list(oracle.classes), oracle.alphabet, oracle.name)

    def target(self, class_name: Optional[str]) -> int:
        """Logit index of ``class_name``; an unknown or missing name lists the valid ones."""
        if class_name is None:
            raise DDSMInputError(f"classifier guidance needs --class, one of the classifier's classes: "
                                 f"{', '.join(self.classes)}")
        if class_name not in self.classes:
            raise DDSMInputError(f"class {class_name!r} is not one of the classes of {self.name}: "
                                 f"{', '.join(self.classes)}")
        return self.classes.index(class_name)


def grad_log_prob(f: Callable[[Tensor], Tensor], x: Tensor, target: int) -> Tensor:
    """d/dx log softmax(f(x))[target] per row, same shape as ``x (B, ...)``, float64.

    Rows must be scored independently (an oracle in eval mode is), so one backward pass of the sum
    gives every row's gradient.
    """
    with torch.enable_grad():  # the sampling loop runs under no_grad
        xg = x.detach().float().requires_grad_(True)
        logp = torch.log_softmax(f(xg).float(), dim=-1)[:, target].sum()
        (g,) = torch.autograd.grad(logp, xg)
    return g.double()


def bits_probabilities(process: BitsProcess, x0_hat: Tensor) -> Tensor:
    """Letter probabilities ``(B, L, K)`` decoded from analog-bit estimates ``x0_hat (B, L, C)``."""
    p1 = ((1.0 + x0_hat / process.scale) / 2.0).clamp(_P_FLOOR, 1.0 - _P_FLOOR)
    if process.encoding == "onehot":
        return p1 / p1.sum(-1, keepdim=True)
    bits = (process.codes(x0_hat.device, x0_hat.dtype) > 0).to(x0_hat.dtype)  # (K, C)
    log_p = torch.log(p1) @ bits.T + torch.log1p(-p1) @ (1.0 - bits).T  # (B, L, K): valid codes only
    return torch.softmax(log_p, dim=-1)


# ------------------------------------------------------------------------------ per-process forms
def _jacobi_score(
    p: JacobiScoreProcess, clf: ClassifierFn, y: int, w: float, out: Tensor, v: Tensor, t: Tensor
) -> Tensor:
    v = v.double()
    g_x = grad_log_prob(clf, sticks_to_simplex(v), y)
    g_v = pullback_x_to_v(g_x, v)  # chain rule through stick-breaking
    return (out.double() + w * p.output_from_score(g_v, v, p.native_time(t))).to(out.dtype)


def _posterior_logits(p: Process, clf: ClassifierFn, y: int, w: float, out: Tensor, x: Tensor,
                      t: Tensor) -> Tensor:
    g = grad_log_prob(clf, torch.softmax(out.double(), dim=-1), y)  # at the posterior mean
    return (out.double() + w * g).to(out.dtype)


def _bits(p: BitsProcess, clf: ClassifierFn, y: int, w: float, out: Tensor, state: Tensor, t: Tensor) -> Tensor:
    x0 = p.clip(out.double())
    g = grad_log_prob(lambda xh: clf(bits_probabilities(p, xh)), x0, y)
    return (x0 + w * (p.scale**2 - x0**2) * g).to(out.dtype)


#: ``Process.classifier_guidance`` value -> the form that edits such an output
_FORMS: dict[str, Callable[..., Tensor]] = {
    "posterior-logits": _posterior_logits,
    "stick-score": _jacobi_score,
    "analog-bits": _bits,
}
#: registered process names classifier guidance supports (for messages), read off their declarations
GUIDED_PROCESSES = tuple(name for name, cls in PROCESSES.items() if cls.classifier_guidance in _FORMS)


def supports_classifier_guidance(process: Process) -> bool:
    """Whether ``process`` declares an output form that classifier guidance knows."""
    return process.classifier_guidance in _FORMS


class ClassifierGuidance:
    """An ``output_hook`` for :func:`ddsm.sampling.sample`: ``(out, xt, t) -> guided out``.

    Args:
        process: a process that declares a ``classifier_guidance`` form (``jacobi``,
            ``dirichlet-fm``, ``bits``: :data:`GUIDED_PROCESSES`).
        classifier: ``clf(x (B, L, K)) -> logits (B, C)``.
        target: the class index y to steer toward.
        weight: w > 0 (w = 0: do not install the hook at all).
        interval: ``(lo, hi)`` public times between which to guide (None: every step); see
            :mod:`ddsm.guidance.cfg`.
    """

    def __init__(self, process: Process, classifier: ClassifierFn, target: int, weight: float,
                 interval: Optional[tuple[float, float]] = None) -> None:
        form = _FORMS.get(process.classifier_guidance) if process.classifier_guidance else None
        if form is None:
            raise DDSMInputError(f"classifier guidance needs a simplex or bits process "
                                 f"({', '.join(GUIDED_PROCESSES)}); this model uses {process.name!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise DDSMInputError(f"classifier guidance weight must be a finite number >= 0, got {weight}")
        self.process, self.classifier, self.target, self.weight = process, classifier, int(target), float(weight)
        self.interval = check_interval(interval)
        self._form = form

    def __call__(self, out: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        if not in_interval(self.interval, t):  # outside the guidance interval: no oracle call
            return out
        return self._form(self.process, self.classifier, self.target, self.weight, out, xt, t)
