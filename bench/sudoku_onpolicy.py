"""On-policy fine-tuning of the Sudoku network on its own successful dilation-1 trajectories.

Why: the network is trained on forward-noised valid grids only, but at DDSM's dilation 1 the
sampler walks through the states its own (imperfect) posterior produces, and boards are lost
there, before t_min (README, Sudoku). Dilation repairs such states with more network calls; this
teaches the network to repair them itself. Record DDSM's own reverse SDE at dilation 1, keep the
boards that end valid, and pair each recorded state (v_tau, t) with the grid its run reached.
Cross-entropy on those pairs is minimised by p_model(x0 | v_tau, the run ends valid): the model's
own posterior conditioned on success (rejection-sampling fine-tuning, as in self-training of
language models on verified answers). Half of each batch keeps the usual loss on forward-noised
grids. The rules are used in training only, to keep or drop a finished run; generation is then the
model alone, DDSM's metric, and `bench/sudoku.py` prints the valid grids' uniformity beside the rate.

    # 1. states of the bundled model's own runs (about 3 s per grid on one fp32 thread)
    python bench/sudoku_onpolicy.py record --grids 256 --seed 101 --out /tmp/onp_101.safetensors
    # (or: also continue each failed run twice from its states at steps 45, 52, 58 and 64, where
    #  boards get lost, and keep the valid continuations' states; `finetune --pairs-from
    #  own|branches|all` picks them; the resources README, round 2q, has their rates:)
    python bench/sudoku_onpolicy.py record --grids 256 --seed 101 --branch-steps 45,52,58,64 --branches 2 \\
        --out /tmp/onpb_101.safetensors
    # (or, round 2t: label the states every run passes at steps 42..67 by continuing each with
    #  the dilated multistep sampler, 12 coarse steps x dilation 8, 64 sub-steps, alpha 0.5, 99 %
    #  valid from scratch: a DAgger round, the student's states with a stronger sampler's grids;
    #  `finetune --expert-weight W` oversamples them, `--pairs-from expert` uses only them)
    python bench/sudoku_onpolicy.py record --grids 256 --seed 901 --expert-steps 42,47,52,57,62,67 \\
        --out /tmp/onpe_901.safetensors
    # 2. fine-tune from the bundled model on them (half the batch) and on fresh grids; round 2q's
    #    `--lr-end 1e-6` (cosine decay over the 30 minutes) came with the end of rounds 3-5's plateau
    python bench/sudoku_onpolicy.py finetune --pairs /tmp/onp_101.safetensors --minutes 30 --lr-end 1e-6 --out RUN
    #    (round 2r: `--focus-t 0.33,0.62` keeps only the states from the window where failed runs
    #     are lost, public time 0.33-0.62: 93.2 % against round 6's 91.0 % on 512 grids)
    #    (round 2u: `--self-condition` extends a plain network to read its own posterior estimate,
    #     starting as the same function; the bundled round 11 was made so, 45 minutes at `--lr 2e-4`)
    # 3. measure with the bundled model's seeds (same noise streams)
    python bench/sudoku.py --model RUN --skip-solve --grids 256 --dilations 1 --threads 1 --seed 3 --extrapolate 1

Pair files are safetensors (tensors and string metadata only: nothing is unpickled).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ddsm.checkpoint import load_config, save_checkpoint
from ddsm.ema import EMA
from ddsm.models.sudoku_grid import with_self_condition
from ddsm.precision import PRECISIONS
from ddsm.processes import JacobiProcess
from ddsm.sampling import sample
from ddsm.sudoku.board import N_CELLS, is_valid_grid
from ddsm.sudoku.generator import GridStream, base_grids
from ddsm.sudoku.model_io import load_sudoku_model

EXPERT = 1000  # branch codes >= this mark states labelled by the expert sampler (EXPERT + step)


def _is_branch(branch: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the pairs from continuations of failed runs (not own-run, not expert-labelled)."""
    return (branch >= 0) & (branch < EXPERT)


def record(args: argparse.Namespace) -> None:
    """Run dilation 1 (100 calls) in batches of 32 and save every ``--every``-th state of the
    boards that end valid: ``v (N, 81, K-1)`` float64, ``t (N,)`` public time, ``x0 (N, 81)``,
    ``branch (N,)`` int16 (-1: the board's own run; k: a branch from its step k).

    With ``--branch-steps``, each board that ends invalid is also continued ``--branches`` times
    from its state at each of those steps, on fresh noise; a continuation that ends valid adds its
    own states from that step on, paired with its grid. Why: a run that succeeds mostly walks
    through states the network already handles; the states of failed runs are where it goes wrong,
    and a valid continuation from one is a draw of p_model(x0 | that state, the run ends valid),
    the same target as the own-run pairs (the failed run's earlier states are not used: the path
    to the branch point was not drawn conditioned on success).

    With ``--expert-steps``, every board's state at each of those steps (valid end or not) is
    also continued once by the expert sampler, the dilated multistep run (``--expert-coarse``
    steps of ``--expert-dilation``, ``--expert-substeps``, ``--expert-extrapolate``) on the
    coarse grid's times below the state's; a valid grid it reaches labels that one state (branch
    code ``EXPERT + step``). Why: the states are the ones dilation 1 visits, failed runs'
    included, and the label is a draw from a sampler that ends valid 99 % of the time from
    scratch (DAgger: the learner's states, a stronger policy's actions)."""
    if any(not 0 <= k < args.steps for k in args.branch_steps + args.expert_steps) or args.branches < 1:
        sys.exit(f"sudoku_onpolicy: branch and expert steps must lie in 0..{args.steps - 1}, and --branches be >= 1")
    sm = load_sudoku_model(args.model)
    proc = copy.copy(sm.process)  # the loaded model keeps its own settings
    proc.extrapolate = args.extrapolate
    gen = torch.Generator().manual_seed(args.seed)
    grid = proc.time_grid(args.steps)
    keep: dict[str, list[torch.Tensor]] = {"v": [], "t": [], "x0": [], "branch": []}
    tried = {k: 0 for k in args.branch_steps}
    won = {k: 0 for k in args.branch_steps}
    n_valid, t0 = 0, time.time()
    expert = copy.copy(sm.process)  # the dilated multistep sampler whose continuations label states
    expert.substeps, expert.extrapolate = args.expert_substeps, args.expert_extrapolate
    coarse = proc.time_grid(args.expert_coarse)
    e_tried = {k: 0 for k in args.expert_steps}
    e_won = {k: 0 for k in args.expert_steps}

    def run_expert(start: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Continue from the states at step k on the coarse grid's later points, dilated."""
        times = torch.cat([grid[k:k + 1], coarse[coarse < grid[k] - 1e-9]])
        tokens = sample(expert, sm.model_fn, (len(start), N_CELLS), generator=gen, times=times,
                        start=start, dilation=args.expert_dilation)
        return tokens, is_valid_grid(tokens)

    def run(b: int, start: torch.Tensor | None = None, k: int = 0):
        states: list[tuple[torch.Tensor, torch.Tensor]] = []

        def hook(out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            states.append((xt.clone(), t.clone()))  # the state the network was just called on
            return out

        tokens = sample(proc, sm.model_fn, (b, N_CELLS), generator=gen, output_hook=hook,
                        times=grid[k:], start=start)
        return tokens, is_valid_grid(tokens), states

    def add(states: list, tokens: torch.Tensor, ok: torch.Tensor, branch: int) -> None:
        for xt, t in states[::args.every]:
            keep["v"].append(xt[ok].double())
            keep["t"].append(t[ok].float())
            keep["x0"].append(tokens[ok])
            keep["branch"].append(torch.full((int(ok.sum()),), branch, dtype=torch.int16))

    for lo in range(0, args.grids, 32):
        b = min(32, args.grids - lo)
        tokens, ok, states = run(b)
        n_valid += int(ok.sum())
        add(states, tokens, ok, -1)
        bad = ~ok
        for k in args.branch_steps if int(bad.sum()) else ():
            start = states[k][0][bad].repeat_interleave(args.branches, 0)
            b_tokens, b_ok, b_states = run(len(start), start, k)
            tried[k] += len(start)
            won[k] += int(b_ok.sum())
            add(b_states, b_tokens, b_ok, k)
        for k in args.expert_steps:  # every board's state at step k, labelled by the expert's grid
            e_tokens, e_ok = run_expert(states[k][0], k)
            e_tried[k] += b
            e_won[k] += int(e_ok.sum())
            add([states[k]], e_tokens, e_ok, EXPERT + k)
        print(f"{lo + b} grids, valid {n_valid / (lo + b):.3f}, expert won "
              f"{ {k: f'{e_won[k]}/{e_tried[k]}' for k in e_tried} }, branches won "
              f"{ {k: f'{won[k]}/{tried[k]}' for k in tried} }, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        if (lo // 32) % 4 == 3 or lo + b >= args.grids:  # a partial file survives an interruption
            meta = {"model": str(args.model or "bundled"), "grids": str(lo + b), "valid": str(n_valid),
                    "seed": str(args.seed), "extrapolate": str(args.extrapolate), "steps": str(args.steps),
                    "every": str(args.every), "branch_steps": json.dumps(args.branch_steps),
                    "branches": str(args.branches), "branches_won": json.dumps({k: [won[k], tried[k]] for k in tried}),
                    "expert": json.dumps({"steps": args.expert_steps, "coarse": args.expert_coarse,
                                          "dilation": args.expert_dilation, "substeps": args.expert_substeps,
                                          "extrapolate": args.expert_extrapolate,
                                          "won": {k: [e_won[k], e_tried[k]] for k in e_tried}})}
            save_file({k: torch.cat(v).contiguous() for k, v in keep.items()}, args.out, metadata=meta)
    branch = torch.cat(keep["branch"])
    print(json.dumps({"grids": args.grids, "valid": n_valid / args.grids, "pairs": len(branch),
                      "branch_pairs": int(_is_branch(branch).sum()),
                      "branches_won": {k: [won[k], tried[k]] for k in tried},
                      "expert_pairs": int((branch >= EXPERT).sum()),
                      "expert_won": {k: [e_won[k], e_tried[k]] for k in e_tried},
                      "out": args.out, "seconds": round(time.time() - t0, 1)}))


def finetune(args: argparse.Namespace) -> None:
    """Fine-tune ``--init`` on ``--frac`` on-policy pairs and ``1 - frac`` fresh forward-noised grids
    per batch (AdamW, short warm-up, constant rate or a cosine to ``--lr-end``, EMA weights saved);
    ``--focus-t`` keeps only the recorded states from a window of public time."""
    torch.manual_seed(args.seed)
    # "auto": bf16 autocast where it is native, the regime the bundled model was trained in (~2x on AMX)
    sm = load_sudoku_model(args.init, precision=args.precision)
    if args.self_condition and not sm.process.self_condition:
        # the network also reads a posterior estimate; a zero weight on it starts from the same function
        sm = dataclasses.replace(sm, net=with_self_condition(sm.net),
                                 process=JacobiProcess(**{**sm.process.config(), "self_condition": True}))
    proc, net, fwd = sm.process, sm.net, sm.model_fn  # fwd: the network under the chosen precision
    files = [load_file(f) for f in args.pairs]
    for f in files:  # files recorded before branching existed hold own-run pairs only
        f.setdefault("branch", torch.full((len(f["x0"]),), -1, dtype=torch.int16))
    v, t, x0, branch = (torch.cat([f[k] for f in files]) for k in ("v", "t", "x0", "branch"))
    use = {"all": branch >= -1, "own": branch < 0, "branches": _is_branch(branch),
           "expert": branch >= EXPERT}[args.pairs_from]
    if args.focus_t is not None:  # only the window where boards are lost (round 2q's branch rates; round 2r)
        use &= (t >= args.focus_t[0]) & (t <= args.focus_t[1])
    v, t, x0, is_expert = v[use], t[use], x0[use], branch[use] >= EXPERT
    # sampling weights: the expert-labelled states (few, and the point of a DAgger round) weigh more
    weights = torch.where(is_expert, args.expert_weight, 1.0).double()
    weighted = bool(is_expert.any()) and args.expert_weight != 1.0
    if len(x0) == 0 and args.frac > 0:
        sys.exit("sudoku_onpolicy: no recorded states to train on (no run ended valid, or none in --focus-t)")
    stream = GridStream(base_grids(args.pool, seed=args.seed + 1000))
    gen = torch.Generator().manual_seed(args.seed)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    ema = EMA(net, decay=args.ema)
    n_on = int(round(args.batch_size * args.frac))
    n_off = args.batch_size - n_on
    t0, step, curve = time.time(), 0, []
    sums = [0.0, 0.0]
    while time.time() - t0 < args.minutes * 60 and step < args.max_steps:
        # warm-up, then constant, or cosine towards --lr-end over the time budget (on the clock,
        # since the budget is minutes): constant-rate EMA weights keep a noise floor
        frac_done = min(1.0, (time.time() - t0) / (args.minutes * 60))
        rate = args.lr if args.lr_end is None else \
            args.lr_end + (args.lr - args.lr_end) * 0.5 * (1 + math.cos(math.pi * frac_done))
        for group in opt.param_groups:
            group["lr"] = rate * min(1.0, (step + 1) / args.warmup)
        loss = torch.zeros(())
        if n_off:  # the usual loss: the process draws times and noisy states of fresh grids
            off = proc.loss(fwd, stream.sample(n_off, generator=gen), generator=gen).loss
            loss, sums[0] = loss + off * (n_off / args.batch_size), sums[0] + float(off.detach())
        if n_on:  # the network's own states, target: the valid grid each run reached
            # uniform draws keep the random stream of the rounds recorded before expert labels existed
            idx = torch.multinomial(weights, n_on, replacement=True, generator=gen) if weighted \
                else torch.randint(0, len(x0), (n_on,), generator=gen)
            logits = proc.model_output(fwd, v[idx], t[idx])
            on = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x0[idx].reshape(-1)).float()
            loss, sums[1] = loss + on * (n_on / args.batch_size), sums[1] + float(on.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update(net)
        step += 1
        if step % 25 == 0:
            row = {"step": step, "loss_grids": sums[0] / 25, "loss_own_states": sums[1] / 25,
                   "seconds": round(time.time() - t0, 1)}
            curve.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            sums = [0.0, 0.0]
    base = load_config(sm.path)
    record_ = {"init": str(sm.path), "pairs": [str(p) for p in args.pairs], "pairs_from": args.pairs_from,
               "focus_t": args.focus_t,
               "n_pairs": len(x0), "n_branch_pairs": int(_is_branch(branch[use]).sum()),
               "n_expert_pairs": int(is_expert.sum()), "expert_weight": args.expert_weight, "steps": step,
               "self_condition": proc.self_condition,
               "batch_size": args.batch_size, "frac": args.frac, "lr": args.lr, "lr_end": args.lr_end,
               "ema_decay": args.ema,
               "seed": args.seed, "pool_size": args.pool,
               "precision": sm.precision, "seconds": round(time.time() - t0, 1)}
    extra = {k: base[k] for k in ("train", "alphabet", "seq_len", "classes", "recipe") if k in base}
    init_from = {"path": str(sm.path), "step": base.get("step"), "train": base.get("train"),
                 "onpolicy": base.get("onpolicy"), "init_from": base.get("init_from")}  # every round's record
    save_checkpoint(args.out, model=net, model_name="sudoku", process=proc, ema=ema,
                    config_extra={**extra, "init_from": init_from, "onpolicy": record_}, step=int(base.get("step", 0)))
    Path(args.out, "onpolicy_curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    print(json.dumps({"out": args.out, **record_}))


def _window(text: str) -> tuple[float, float]:
    """``--focus-t LO,HI``: two public times, LO <= HI (argparse turns the error into one line)."""
    parts = text.split(",")
    try:
        lo, hi = (float(x) for x in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two public times), got {text!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI <= 1, got {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="states of the model's own dilation-1 runs that end valid")
    r.add_argument("--model", default=None, help="Sudoku checkpoint (default: bundled)")
    r.add_argument("--grids", type=int, default=256)
    r.add_argument("--steps", type=int, default=100)
    r.add_argument("--extrapolate", type=float, default=1.0, help="the multistep correction alpha of the runs")
    r.add_argument("--every", type=int, default=4, help="keep every n-th step's state")
    r.add_argument("--branch-steps", type=lambda a: [int(x) for x in a.split(",") if x], default=[],
                   help="comma-separated steps (0..steps-1) at which failed runs are continued afresh")
    r.add_argument("--branches", type=int, default=4, help="continuations per failed run and branch step")
    r.add_argument("--expert-steps", type=lambda a: [int(x) for x in a.split(",") if x], default=[],
                   help="comma-separated steps at which every board's state is continued by the expert "
                        "(dilated multistep) sampler; its valid grids label those states (DAgger)")
    r.add_argument("--expert-coarse", type=int, default=12, help="the expert's coarse grid (network calls / dilation)")
    r.add_argument("--expert-dilation", type=float, default=8.0)
    r.add_argument("--expert-substeps", type=int, default=64)
    r.add_argument("--expert-extrapolate", type=float, default=0.5)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    f = sub.add_parser("finetune", help="fine-tune on recorded pairs and fresh grids")
    f.add_argument("--init", default=None, help="Sudoku checkpoint to start from (default: bundled)")
    f.add_argument("--pairs", nargs="+", required=True)
    f.add_argument("--expert-weight", type=float, default=1.0,
                   help="sampling weight of an expert-labelled state against 1 for the others")
    f.add_argument("--pairs-from", choices=("all", "own", "branches", "expert"), default="all",
                   help="the files' pairs from the runs themselves, from continuations of failed runs, "
                        "from expert-labelled states, or all")
    f.add_argument("--focus-t", type=_window, default=None,
                   help="LO,HI: train only on recorded states with public time in [LO, HI]")
    f.add_argument("--out", required=True)
    f.add_argument("--self-condition", action="store_true",
                   help="the network also reads its posterior estimate (jacobi self_condition); a network "
                        "without it is extended with a zero weight on the estimate, the same function")
    f.add_argument("--minutes", type=float, default=30.0)
    f.add_argument("--max-steps", type=int, default=10**9)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--frac", type=float, default=0.5, help="share of each batch from the recorded pairs")
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--lr-end", type=float, default=None, help="cosine decay to this rate over --minutes")
    f.add_argument("--warmup", type=int, default=20)
    f.add_argument("--ema", type=float, default=0.995)
    f.add_argument("--pool", type=int, default=2000, help="backtracking grids behind the fresh-grid stream")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--precision", choices=PRECISIONS, default="auto", help="bf16 autocast of the network where native")
    for q in (r, f):
        q.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    (record if args.cmd == "record" else finetune)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
