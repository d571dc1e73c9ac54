"""Where does a trained network's posterior fall short of the exact one? Jacobi against masked.

    OMP_NUM_THREADS=1 python bench/posterior_gap.py --processes jacobi,masked --seconds 120 --seed 2

On bench/entropy.py's order-2 Markov chain the exact posterior p(x0_l | noisy sequence) is computable
for both processes: the noisy state gives each position a likelihood over its letter (DDSM: the
exact local evidence q_tau(v_l | k); masked: one-hot for a revealed token, flat for a mask), and
forward-backward over the chain's contexts combines them. So each trained network's excess
cross-entropy over the Bayes posterior, E[CE(model) - CE(exact)] per token (a KL divergence), can
be read off band by band. Bands are indexed by the information still missing, h = the mean
normalised entropy of the local evidence (DDSM: ``JacobiProcess.local_entropy``; masked: the mask
rate), so the two processes are compared where the noisy sequence holds the same amount of local
information. Also printed: the exact conditional entropy per token in each band (what the
posterior itself leaves open).

This locates the DDSM-masked gap of bench/entropy.py: a larger excess at equal h means the network
learns the posterior more slowly from soft evidence; an equal excess means the loss sits in how
the bound turns posterior error into bits.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from entropy import context_transitions, draw, markov_chain, train_for_budget  # noqa: E402


def exact_posterior(log_e: torch.Tensor, P: np.ndarray, pi: np.ndarray, order: int) -> torch.Tensor:
    """Letter marginals ``(B, L, K)`` float64 of the chain given per-position log-likelihoods
    ``log_e (B, L, K)`` (any additive constant per position), by scaled forward-backward over the
    chain's contexts (the last ``order`` letters, most significant first)."""
    B, L, K = log_e.shape
    n = len(pi)
    T = torch.from_numpy(context_transitions(P))
    e = torch.exp(log_e - log_e.amax(-1, keepdim=True))  # (B, L, K), max 1 per position
    last = torch.arange(n) % K  # last letter of each context
    digits = [(torch.arange(n) // K ** (order - 1 - j)) % K for j in range(order)]
    l0 = order - 1
    a = torch.as_tensor(pi, dtype=torch.float64).expand(B, n).clone()
    for j in range(order):
        a = a * e[:, j, digits[j]]
    alphas = [a / a.sum(-1, keepdim=True)]
    for pos in range(l0 + 1, L):
        a = (alphas[-1] @ T) * e[:, pos, last]
        alphas.append(a / a.sum(-1, keepdim=True))
    b = torch.ones(B, n, dtype=torch.float64)
    betas = [b]
    for pos in range(L - 1, l0, -1):
        b = (T @ (e[:, pos, last] * b).T).T
        betas.append(b / b.sum(-1, keepdim=True))
    betas = betas[::-1]
    out = torch.zeros(B, L, K, dtype=torch.float64)
    for i, (a, b) in enumerate(zip(alphas, betas)):
        g = a * b
        g = g / g.sum(-1, keepdim=True)
        pos = l0 + i
        out[:, pos] = torch.zeros(B, K, dtype=torch.float64).index_add_(1, last, g)
        if i == 0:
            for j in range(order - 1):
                out[:, j] = torch.zeros(B, K, dtype=torch.float64).index_add_(1, digits[j], g)
    return out


def jacobi_time_for(proc, h: float) -> float:
    """Public training-grid time whose local entropy fraction is closest to ``h``."""
    i = int((proc.local_entropy - h).abs().argmin())
    return float(proc.train_times[i])


@torch.no_grad()
def band_gap(name: str, proc, net, x0: torch.Tensor, h: float, P, pi, order: int, generator) -> tuple[float, float]:
    """(excess CE of the network over the exact posterior, exact conditional entropy), bits per token."""
    B, L = x0.shape
    K = proc.K
    if name == "jacobi":
        t = torch.full((B,), jacobi_time_for(proc, h), dtype=torch.float64)
        v = proc.sample_noisy(x0, t, generator=generator).xt
        log_e = proc.local_loglik(v, proc.native_time(t))
        logits = proc.model_output(net, v, t)
    else:
        t = torch.full((B,), h, dtype=torch.float64)  # linear schedule: the mask rate is t (up to eps)
        xt = proc.sample_noisy(x0, t, generator=generator).xt
        masked = (xt == proc.mask_id)[..., None]
        log_e = torch.where(masked | (torch.nn.functional.one_hot(xt.clamp_max(K - 1), K) > 0),
                            0.0, -1e30).double()
        logits = proc.model_output(net, xt, t)
    exact = exact_posterior(log_e, P, pi, order)
    logq = torch.log_softmax(logits.double(), -1).gather(-1, x0[..., None]).squeeze(-1)
    logp = torch.log(exact.gather(-1, x0[..., None]).squeeze(-1).clamp_min(1e-300))
    ln2 = math.log(2.0)
    return float((logp - logq).mean()) / ln2, float(-logp.mean()) / ln2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", default="jacobi,masked")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--bands", default="0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95")
    ap.add_argument("--jacobi-set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--jacobi-model-set", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    from ddsm.cli.common import set_options

    K, L, order = 4, args.length, 2
    rng = np.random.default_rng(args.seed)  # the same chain and data as bench/entropy.py at this seed
    P, pi = markov_chain(order, K, rng)
    train_x = torch.from_numpy(draw(P, pi, 20000, L, order, K, rng))
    test_x = torch.from_numpy(draw(P, pi, args.n_test, L, order, K, rng))
    bands = [float(b) for b in args.bands.split(",")]
    rows = {}
    for name in [n for n in args.processes.split(",") if n]:
        opts = set_options(args.jacobi_set) if name == "jacobi" else {}
        mopts = set_options(args.jacobi_model_set) if name == "jacobi" else {}
        proc, net, steps, t_train = train_for_budget(name, K, train_x, seconds=args.seconds, seed=args.seed,
                                                     options=opts, model_options=mopts)
        g = torch.Generator().manual_seed(args.seed + 1)
        rows[name] = [band_gap(name, proc, net, test_x, h, P, pi, order, g) for h in bands]
        print(f"{name}: {steps} steps in {t_train:.0f} s; excess CE over the exact posterior (bits/token) by h: "
              + ", ".join(f"{h:g}: {ex:+.4f}" for h, (ex, _) in zip(bands, rows[name])), flush=True)
    print("h | " + " | ".join(f"{n} excess | {n} exact H(x0 | noisy)" for n in rows))
    for i, h in enumerate(bands):
        print(f"{h:g} | " + " | ".join(f"{rows[n][i][0]:+.4f} | {rows[n][i][1]:.4f}" for n in rows))


if __name__ == "__main__":
    main()
