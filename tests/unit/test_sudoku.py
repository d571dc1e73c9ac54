"""Sudoku: rules, generator, symmetries, propagation, search, exact-statistics tables, the
posterior-parameterised process, the equivariant network and the constraint-aware sampler."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ddsm.legacy import LEGACY_POSTERIOR as LEGACY_PROCESS
from ddsm.legacy import upgrade_config
from ddsm.models.sudoku_grid import SudokuDenoiser
from ddsm.processes.jacobi import JacobiProcess
from ddsm.special.stick_posterior import category_loglik, mixture_score
from ddsm.sudoku.board import (
    describe_problem,
    format_board,
    givens_conflict,
    is_solution,
    is_valid_grid,
    keeps_givens,
    parse_board,
)
from ddsm.sudoku.generator import GridStream, base_grids, random_grids
from ddsm.sudoku.process import sudoku_process
from ddsm.sudoku.propagation import candidates, probe, propagate
from ddsm.sudoku.search import backtrack
from ddsm.sudoku.symmetry import dihedral, random_symmetries

# A known valid grid and a hard puzzle with its unique solution (Norvig's "hardest" set).
GRID = "859612437723854169164379528986147352375268914241593786432981675617425893598736241"
PUZZLE = "85...24..72......9..4.........1.7..23.5...9...4...........8..7..17..........36.4."
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def board(s: str) -> torch.Tensor:
    return parse_board(s)[None]


# ----------------------------------------------------------------------------------- rules
def test_valid_grid_and_hand_made_bad_boards():
    g = board(GRID)
    assert bool(is_valid_grid(g)[0])
    # a Latin square that is not a Sudoku: rows and columns fine, boxes not
    latin = torch.tensor([[(r + c) % 9 for r in range(9) for c in range(9)]])
    assert not bool(is_valid_grid(latin)[0])
    assert bool(is_valid_grid(latin, check_boxes=False)[0])
    # swapping two cells of a row keeps the row but breaks two columns
    s = g.clone()
    s[0, 0], s[0, 1] = g[0, 1], g[0, 0]
    assert not bool(is_valid_grid(s)[0])
    # a repeated digit, a blank, an out-of-range digit
    r = g.clone()
    r[0, 0] = r[0, 1]
    blank = g.clone()
    blank[0, 40] = -1
    out = g.clone()
    out[0, 5] = 9
    assert not is_valid_grid(torch.cat([r, blank, out])).any()


def test_parse_format_and_problems():
    assert format_board(parse_board(PUZZLE)) == PUZZLE
    assert format_board(parse_board(PUZZLE.replace(".", "0"))) == PUZZLE
    with pytest.raises(ValueError, match="81"):
        parse_board(PUZZLE[:-1])
    with pytest.raises(ValueError, match="position 3"):
        parse_board("85x" + PUZZLE[3:])
    assert describe_problem(PUZZLE) is None
    bad = "88" + PUZZLE[2:]
    msg = describe_problem(bad)
    assert msg and "digit 8" in msg and "row 1" in msg
    assert bool(givens_conflict(board(bad))[0]) and not bool(givens_conflict(board(PUZZLE))[0])
    assert "81" in describe_problem("123")


def test_solution_keeps_givens():
    assert bool(is_solution(board(GRID), board(PUZZLE))[0])
    other = board(GRID).clone()
    perm = torch.tensor([1, 0, 2, 3, 4, 5, 6, 7, 8])
    other = perm[other]  # still a valid grid, but the givens change
    assert bool(is_valid_grid(other)[0]) and not bool(keeps_givens(other, board(PUZZLE))[0])


# ------------------------------------------------------------------------- generator, symmetry
def test_generator_output_always_valid_and_varied():
    pool = base_grids(20, seed=3)
    assert is_valid_grid(pool).all() and len({tuple(g) for g in pool.tolist()}) == 20
    grids = GridStream(pool).sample(2000, generator=torch.Generator().manual_seed(0))
    assert is_valid_grid(grids).all()
    assert len({tuple(g) for g in grids.tolist()}) > 1990
    # every digit is equally common at a cell, as for uniformly random grids (loose check)
    freq = torch.nn.functional.one_hot(grids[:, 0], 9).float().mean(0)
    assert float(freq.min()) > 0.07


def test_symmetries_preserve_validity_and_invert():
    g = base_grids(8, seed=1)
    s = random_symmetries(8, generator=torch.Generator().manual_seed(1))
    assert is_valid_grid(s.apply(g)).all()
    assert torch.equal(s.inverse().apply(s.apply(g)), g)
    for k in range(8):
        assert is_valid_grid(dihedral(torch.full((8,), k)).apply(g)).all()
    # candidate tables move with the board: the one-hot table of a board maps to the moved board's
    onehot = torch.nn.functional.one_hot(g, 9).bool()
    assert torch.equal(s.apply_candidates(onehot), torch.nn.functional.one_hot(s.apply(g), 9).bool())
    # blanks stay blank
    p = board(PUZZLE).expand(8, -1)
    assert torch.equal(s.apply(p) < 0, s.apply_cells(p < 0))


# ------------------------------------------------------------------------- propagation, search
def test_propagation_is_sound_and_solves_easy_puzzles():
    cand, dead = propagate(candidates(torch.cat([board(PUZZLE), board(EASY)])))
    assert not dead.any()
    sol = board(GRID)[0]
    assert bool(cand[0].gather(1, sol[:, None]).all())  # the solution survives every deduction
    assert bool((cand[1].sum(-1) == 1).all())  # the easy one is solved outright
    easy_sol = cand[1].float().argmax(-1)
    assert bool(is_solution(easy_sol[None], board(EASY))[0])


def _singles_reference(cand: list[set[int]]) -> tuple[list[set[int]], bool]:
    """Naked and hidden singles, one board, plain Python, to a fixed point: (table, contradiction)."""
    from ddsm.sudoku.board import peers, units

    P, U = peers().tolist(), units().tolist()
    t = [set(c) for c in cand]
    changed = True
    while changed:
        changed = False
        for c in range(81):
            if len(t[c]) == 1:
                for q in P[c]:
                    if t[c] & t[q]:
                        t[q] = t[q] - t[c]
                        changed = True
        for u in U:
            for d in range(9):
                where = [c for c in u if d in t[c]]
                if not where:
                    return t, True
                if len(where) == 1 and len(t[where[0]]) > 1:
                    t[where[0]] = {d}
                    changed = True
        if any(not x for x in t):
            return t, True
    return t, False


def test_batched_propagation_matches_a_plain_python_reference():
    # random partial boards: cells of valid grids revealed, plus random extra eliminations, so some
    # tables are consistent and some are contradictions
    rng = torch.Generator().manual_seed(5)
    grids = random_grids(24, seed=3)
    keep = torch.rand(24, 81, generator=rng) < 0.35
    cand = candidates(torch.where(keep, grids, torch.full_like(grids, -1)))
    cand &= ~((torch.rand(24, 81, 9, generator=rng) < 0.06) & (cand.sum(-1, keepdim=True) > 1))
    got, dead = propagate(cand)
    n_dead = 0
    for b in range(24):
        ref, ref_dead = _singles_reference([set(torch.nonzero(cand[b, c]).flatten().tolist()) for c in range(81)])
        assert bool(dead[b]) == ref_dead
        n_dead += ref_dead
        if not ref_dead:  # the closure of the rules is unique for a consistent table
            assert [set(torch.nonzero(got[b, c]).flatten().tolist()) for c in range(81)] == ref
    assert 0 < n_dead < 24  # both kinds were exercised


def test_probing_is_sound_and_stronger_than_singles():
    # Norvig's hardest puzzle and Arto Inkala's: singles leave both open
    inkala = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
    puzzles = torch.cat([board(PUZZLE), board(inkala)])
    single, _ = propagate(candidates(puzzles))
    probed, dead = probe(candidates(puzzles))
    assert not dead.any()
    assert bool((probed <= single).all()) and int(probed.sum()) < int(single.sum())
    for b, p in enumerate(puzzles):
        sol = torch.tensor(backtrack(p.tolist()).grid)
        assert bool(probed[b].gather(1, sol[:, None]).all())  # no solution digit removed
    # a fixed point: no candidate left fails on its own
    b, c, d = torch.nonzero(probed & (probed.sum(-1, keepdim=True) > 1), as_tuple=True)
    trial = probed[b].clone()
    trial[torch.arange(len(b)), c] = False
    trial[torch.arange(len(b)), c, d] = True
    assert len(b) > 0 and not propagate(trial)[1].any()
    # a contradiction that singles alone see is reported too
    impossible = board("12345678." + "." * 63 + "........9")
    assert bool(probe(candidates(impossible))[1][0])


def test_contradiction_and_search():
    # givens that do not conflict, but leave cell (1, 9) without a digit
    p = list("12345678." + "." * 63 + "........9")
    impossible = board("".join(p))
    assert not bool(givens_conflict(impossible)[0])
    _, dead = propagate(candidates(impossible))
    assert bool(dead[0])
    assert backtrack(impossible[0].tolist()).grid is None
    res = backtrack(parse_board(PUZZLE).tolist())
    assert res.grid == parse_board(GRID).tolist()
    grid = backtrack([-1] * 81, rng=random.Random(0)).grid
    assert bool(is_valid_grid(torch.tensor([grid]))[0])


# --------------------------------------------------------------------------- process and tables
@pytest.fixture(scope="module")
def proc() -> JacobiProcess:
    return sudoku_process(n_train_times=4)


def _feats(logpost: torch.Tensor) -> torch.Tensor:
    """The jacobi process's network features of local log-posteriors ``(B, 81, 9)``."""
    return torch.cat([logpost.exp(), logpost.clamp_min(-30.0) / 10.0], -1)


def test_tables_match_exact_jacobi_statistics(proc):
    exact = JacobiProcess(K=9, T=proc.T)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 9, (4, 81), generator=gen)
    for t in (0.05, 0.3, 0.8):
        tt = torch.full((4,), t)
        v = proc.sample_noisy(x0, tt, generator=gen).xt
        tau = proc.native_time(tt)
        stats = proc.stick_stats(v, tau)
        loglik = category_loglik(stats)
        ref = exact.conditional_logpdf_all(v, tau)
        post, post_ref = torch.softmax(loglik, -1), torch.softmax(ref, -1)
        assert float((post - post_ref).abs().sum(-1).max()) < 1e-4
        assert float(((loglik - ref).abs() / (1 + ref.abs())).max()) < 1e-3
        # the mixture score with a one-hot posterior is the exact conditional score
        onehot = torch.nn.functional.one_hot(x0, 9).double()
        score = mixture_score(onehot, stats)
        ref_score = exact.conditional_score(x0, v, tau)
        assert float(((score - ref_score).abs() / (1 + ref_score.abs())).max()) < 1e-3


def test_noisy_draws_decode_near_data_and_impose(proc):
    gen = torch.Generator().manual_seed(1)
    x0 = base_grids(8, seed=0)
    t = torch.full((8,), 0.03)
    v = proc.sample_noisy(x0, t, generator=gen).xt
    assert proc.is_valid(v) and (proc.decode(v) == x0).float().mean() > 0.99
    # at the prior end the sticks look stationary: decoded digits are spread out
    v1 = proc.sample_noisy(x0, torch.ones(8), generator=gen).xt
    assert (proc.decode(v1) == x0).float().mean() < 0.5
    known = torch.rand(8, 81, generator=gen) < 0.3
    imposed = proc.impose(v1, x0, known, t, generator=gen)
    assert torch.equal(imposed[~known], v1[~known])
    assert (proc.decode(imposed)[known] == x0[known]).float().mean() > 0.99


def test_config_round_trip_and_loss(proc):
    assert JacobiProcess(**proc.config()).config() == proc.config()
    net = SudokuDenoiser(d_model=8, n_layers=1, hidden=8)
    out = proc.loss(net, base_grids(4, seed=2), generator=torch.Generator().manual_seed(0))
    assert out.terms.shape == (4, 81) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_denoiser_is_digit_and_band_equivariant():
    torch.manual_seed(0)
    net = SudokuDenoiser(d_model=8, n_layers=2, hidden=8)
    for p in net.parameters():  # zero-initialised gates would make the test trivial
        torch.nn.init.normal_(p, std=0.2)
    x = torch.log_softmax(torch.randn(3, 81, 9), -1)
    t = torch.rand(3)
    out = net(_feats(x), t)
    perm = torch.randperm(9)
    assert torch.allclose(net(_feats(x[..., perm]), t), out[..., perm], atol=1e-5)
    sym = random_symmetries(3, transpose=False, relabel=False, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(net(_feats(sym.apply_cells(x)), t), sym.apply_cells(out), atol=1e-5)
    # at initialisation the correction is zero: logits = the local evidence
    fresh = SudokuDenoiser(d_model=8, n_layers=1, hidden=8)
    assert torch.equal(fresh(_feats(x), t), torch.zeros_like(x))


def test_a_drifted_logit_constant_changes_nothing_even_under_bf16():
    """Logits are defined up to a constant per cell, which training leaves free to drift (the
    bundled model's reached several hundred); a bf16 head rounded it, and with it the per-digit
    differences, to steps of whole nats. The output layers run in float32 and the correction is
    centred, so the constant changes nothing, in float32 or under bf16 autocast."""
    torch.manual_seed(0)
    net = SudokuDenoiser(d_model=16, n_layers=2, hidden=16)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = _feats(torch.log_softmax(0.05 * torch.randn(4, 81, 9), -1))  # high noise: nearly flat evidence
    t = torch.full((4,), 0.9)
    with torch.no_grad():
        net.head.weight.mul_(50.0)  # per-digit corrections of a few tenths, as trained ones are
        ref = net(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, t)
        net.head.bias.fill_(400.0)
        torch.testing.assert_close(net(x, t), ref, atol=1e-3, rtol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            drifted = net(x, t)
    assert drifted.dtype == torch.float32
    torch.testing.assert_close(drifted, low, atol=1e-3, rtol=0)


def test_deepened_network_computes_the_same_function_and_trains(tmp_path):
    from ddsm.models.sudoku_grid import deepen
    from ddsm.sudoku.model_io import load_sudoku_model
    from ddsm.sudoku.training import SudokuRecipe, sudoku_train_config, train_sudoku

    torch.manual_seed(0)
    base = SudokuDenoiser(d_model=8, n_layers=3, hidden=8)
    for p in base.parameters():  # trained-looking weights: every old block does something
        torch.nn.init.normal_(p, std=0.2)
    x, t = _feats(torch.log_softmax(torch.randn(2, 81, 9), -1)), torch.rand(2)
    deep = deepen(base, 7)
    assert deep.n_layers == 7 and torch.equal(deep(x, t), base(x, t))
    moved = [i for i, b in enumerate(deep.blocks) if b.ada.weight.abs().sum() > 0]
    assert moved == [1, 3, 5]  # old blocks in their order, the 4 new (identity) ones around them
    with pytest.raises(ValueError, match="cannot deepen"):
        deepen(base, 2)
    # a warm start from a shallower checkpoint trains the deeper network from the same function
    cfg = sudoku_train_config(steps=1, batch_size=4, warmup_steps=1, lr=1e-12)
    small = SudokuRecipe(pool_size=8, model={"d_model": 8, "n_layers": 1, "hidden": 8}, process={"n_train_times": 8})
    train_sudoku(small, cfg, tmp_path / "one")
    grown = SudokuRecipe(pool_size=8, model={"d_model": 8, "n_layers": 3, "hidden": 8}, process={"n_train_times": 8})
    train_sudoku(grown, cfg, tmp_path / "three", init_from=tmp_path / "one")
    one = load_sudoku_model(tmp_path / "one", precision="fp32")
    three = load_sudoku_model(tmp_path / "three", precision="fp32")
    assert three.net.n_layers == 3
    with torch.no_grad():  # lr 0: the deeper network is still exactly the shallow one
        torch.testing.assert_close(three.net(x, t), one.net(x, t))


def test_self_conditioned_network_starts_as_the_plain_one_and_reads_its_estimate():
    """``with_self_condition`` adds the third feature per digit (the jacobi process's posterior
    estimate) with zero input weight: the same correction as the plain network until trained, and
    the process then feeds it a posterior (a second pass at the bound, the previous call in a run)."""
    from ddsm.models.sudoku_grid import with_self_condition

    torch.manual_seed(0)
    base = SudokuDenoiser(d_model=8, n_layers=2, hidden=8)
    for p in base.parameters():
        torch.nn.init.normal_(p, std=0.2)
    net = with_self_condition(base)
    assert net.in_channels == 27 and net.inp.weight.shape == (8, 3)
    plain, sc = sudoku_process(), sudoku_process(self_condition=True)
    assert sc.in_channels == 27
    v = plain.prior((2, 81), generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), 0.4)
    with torch.no_grad():
        torch.testing.assert_close(sc.model_output(net, v, t), plain.model_output(base, v, t))
        net.inp.weight[:, 2] = 1.0  # once it reads the estimate, the output depends on it
        assert not torch.allclose(sc.model_output(net, v, t), plain.model_output(base, v, t))
    with pytest.raises(ValueError, match="already reads"):
        with_self_condition(net)
    with pytest.raises(ValueError, match="2 features per digit"):
        SudokuDenoiser(in_channels=20)


# ---------------------------------------------------------------------- constraint-aware sampler
def test_constrained_sampler_never_proposes_excluded_digits(proc):
    from ddsm.sudoku.constrained import constrained_sample
    from ddsm.sudoku.model_io import SudokuModel

    torch.manual_seed(0)
    net = SudokuDenoiser(d_model=8, n_layers=1, hidden=8).eval()
    sm = SudokuModel(proc, net, {}, None)
    puzzles = torch.cat([board(PUZZLE), board(EASY)]).repeat(2, 1)
    cand, _ = propagate(candidates(puzzles))
    for mode in ("static", "peers", "propagate"):
        out = constrained_sample(sm, cand, steps=4, mode=mode, generator=torch.Generator().manual_seed(0))
        boards, dead = out.boards, out.dead
        assert out.frame.tolist() == list(range(len(cand)))  # no groups: nothing resampled
        assert bool(cand.gather(2, boards[..., None]).all())  # every digit was allowed
        assert keeps_givens(boards, puzzles).all()
        assert is_solution(boards[1::2], puzzles[1::2]).all()  # the easy one is forced completely
        assert not dead[1::2].any()


def test_dead_particles_take_a_living_particle_of_their_own_puzzle():
    from ddsm.sudoku.constrained import _donors

    group = torch.tensor([0, 0, 0, 1, 1, 2])
    out = torch.tensor([True, False, False, True, True, True])  # leaving this step
    needy = torch.tensor([True, False, False, True, False, True])  # died this step
    g = torch.Generator().manual_seed(0)
    picks = {int(_donors(group, out, needy, g)[0]) for _ in range(50)}
    assert picks == {1, 2}  # uniform over the living boards of puzzle 0
    src = _donors(group, out, needy, g)
    assert src[3] == -1 and src[5] == -1  # puzzles 1 and 2 have no living board left
    assert (src[~needy] == -1).all()


def test_grouped_sampling_stays_within_each_puzzle(proc):
    from ddsm.sudoku.constrained import constrained_sample
    from ddsm.sudoku.model_io import SudokuModel

    torch.manual_seed(0)
    sm = SudokuModel(proc, SudokuDenoiser(d_model=8, n_layers=1, hidden=8).eval(), {}, None)
    puzzles = torch.cat([board(PUZZLE).repeat(4, 1), board(EASY).repeat(2, 1)])
    group = torch.tensor([0, 0, 0, 0, 1, 1])
    cand, _ = propagate(candidates(puzzles))
    out = constrained_sample(sm, cand, steps=6, group=group, generator=torch.Generator().manual_seed(3))
    assert (group[out.frame] == group).all()  # copies come from the same puzzle only
    assert bool(cand[out.frame].gather(2, out.boards[..., None]).all())  # allowed in the board's frame
    assert keeps_givens(out.boards, puzzles).all()
    assert is_solution(out.boards[4:], puzzles[4:]).all()
    assert out.board_steps <= 4 * 6  # the easy puzzle's boards finish before any network call


def test_failed_literal_exclusions_never_remove_the_solution():
    from ddsm.sudoku.constrained import _exclude_failed

    sol = torch.tensor(backtrack(parse_board(PUZZLE).tolist()).grid)
    before, _ = propagate(candidates(board(PUZZLE)))
    rng = torch.Generator().manual_seed(0)
    befores, afters = [], []
    while len(afters) < 20:  # runs that fixed a few random digits and ran into a contradiction
        t = before[0].clone()
        for c in torch.randperm(81, generator=rng)[:6].tolist():
            opts = torch.nonzero(t[c]).flatten()
            if len(opts) > 1:
                t[c] = torch.nn.functional.one_hot(opts[torch.randint(len(opts), (1,), generator=rng)], 9)[0].bool()
        after, bad = propagate(t[None])
        if bool(bad[0]):
            befores.append(before[0])
            afters.append(after[0])
    out = _exclude_failed(torch.stack(befores), torch.stack(afters))
    assert not (out & ~torch.stack(befores)).any()  # only removes
    assert bool(out.gather(2, sol.expand(len(out), -1)[..., None]).all())  # the solution survives
    removed = (torch.stack(befores) & ~out).sum((1, 2))
    assert int(removed.sum()) > 0  # and the failures taught something
    # exactly the fixed digits that contradict the table on their own are removed
    B, A = torch.stack(befores), torch.stack(afters)
    fixed = (A.sum(-1) == 1) & (B.sum(-1) > 1)
    for i, c in torch.nonzero(fixed).tolist():
        probe = B[i].clone()
        probe[c] = A[i, c]
        alone_fails = bool(propagate(probe[None])[1][0])
        assert bool((out[i, c] & A[i, c]).any()) != alone_fails


@pytest.mark.parametrize("on_dead", ["rewind", "copy", "drop"])
def test_constrained_sampler_budget_and_tables_under_every_death_policy(proc, on_dead):
    from ddsm.sudoku.constrained import constrained_sample
    from ddsm.sudoku.model_io import SudokuModel

    torch.manual_seed(0)
    sm = SudokuModel(proc, SudokuDenoiser(d_model=8, n_layers=1, hidden=8).eval(), {}, None)
    puzzles = board(PUZZLE).repeat(4, 1)
    group = torch.tensor([0, 0, 1, 1])
    cand, _ = propagate(candidates(puzzles))
    budget = torch.tensor([7, 7, 30, 30])
    out = constrained_sample(sm, cand, steps=6, group=group, on_dead=on_dead, budget=budget,
                             generator=torch.Generator().manual_seed(1))
    spent = torch.zeros(2, dtype=torch.long).index_add_(0, group, out.evals)
    assert spent[0] <= 7 and spent[1] <= 30
    assert bool(cand[out.frame].gather(2, out.boards[..., None]).all())
    assert keeps_givens(out.boards, puzzles).all()
    if on_dead == "rewind":
        # no budget given: no more calls than the boards' runs without rewinds
        free = constrained_sample(sm, cand, steps=6, on_dead="rewind", generator=torch.Generator().manual_seed(1))
        assert (free.evals <= 6).all()
    with pytest.raises(ValueError):
        constrained_sample(sm, cand, steps=6, on_dead="revive")


def test_rewinds_spend_budget_that_dropped_boards_leave(proc):
    from ddsm.sudoku.constrained import constrained_sample
    from ddsm.sudoku.model_io import SudokuModel

    torch.manual_seed(0)
    sm = SudokuModel(proc, SudokuDenoiser(d_model=8, n_layers=1, hidden=8).eval(), {}, None)
    cand, _ = propagate(candidates(board(PUZZLE).repeat(8, 1)))
    kw = dict(steps=12, budget=60, generator=torch.Generator().manual_seed(2))
    drop = constrained_sample(sm, cand, on_dead="drop", **kw)
    assert drop.dead.any()  # an untrained network on a hard puzzle runs into contradictions
    kw["generator"] = torch.Generator().manual_seed(2)
    back = constrained_sample(sm, cand, on_dead="rewind", **kw)
    assert back.evals.sum() > drop.evals.sum()  # rewound boards ran on
    assert (back.evals <= 60).all()


def test_solver_keeps_givens_and_reports_solvers(proc):
    from ddsm.sudoku.model_io import SudokuModel
    from ddsm.sudoku.solve import CONSTRAINED, PROPAGATION, SEARCH, SolveConfig, solve_puzzles

    torch.manual_seed(0)
    sm = SudokuModel(proc, SudokuDenoiser(d_model=8, n_layers=1, hidden=8).eval(), {}, None)
    puzzles = torch.cat([board(PUZZLE), board(EASY)])
    res = solve_puzzles(sm, puzzles, SolveConfig(steps=3, particles=2, budget=2, probe=0),
                        generator=torch.Generator().manual_seed(0))
    assert res.valid.all() and is_solution(res.solutions, puzzles).all()
    assert res.solver[1] == PROPAGATION and res.solver[0] in (CONSTRAINED, SEARCH)
    # probing (the default) settles this one before any network call
    probed = solve_puzzles(sm, puzzles[:1], SolveConfig(steps=3), generator=torch.Generator().manual_seed(0))
    assert probed.solver == [PROPAGATION] and int(probed.samples_used[0]) == 0
    assert torch.equal(probed.solutions, res.solutions[:1])
    # network calls in full runs: the sampled puzzle within its budget, the propagated one none
    assert 1 <= int(res.samples_used[0]) <= 2 and int(res.samples_used[1]) == 0 and (res.seconds >= 0).all()
    off = solve_puzzles(sm, puzzles[:1], SolveConfig(steps=3, particles=1, budget=1, search=False, probe=0),
                        generator=torch.Generator().manual_seed(0))
    assert keeps_givens(off.solutions.clamp_min(-1), puzzles[:1]).all() or not bool(off.valid[0])
    assert np.isfinite(off.seconds.numpy()).all()


def test_probing_sampler_finishes_a_puzzle_that_probing_alone_leaves_open(proc):
    from ddsm.sudoku.model_io import SudokuModel
    from ddsm.sudoku.solve import CONSTRAINED, SolveConfig, solve_puzzles

    torch.manual_seed(0)
    sm = SudokuModel(proc, SudokuDenoiser(d_model=8, n_layers=1, hidden=8).eval(), {}, None)
    inkala = board("8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..")
    assert (probe(candidates(inkala))[0].sum(-1) > 1).any()  # the rules alone leave it open
    res = solve_puzzles(sm, inkala, SolveConfig(steps=10, budget=8, search=False),
                        generator=torch.Generator().manual_seed(0))
    assert res.solver == [CONSTRAINED] and bool(is_solution(res.solutions, inkala)[0])


def test_clashing_commitments_are_committed_in_turn_not_fatal():
    from ddsm.sudoku.board import units
    from ddsm.sudoku.constrained import _commit_in_turn, _narrow

    inkala = board("8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..")
    table, _ = probe(candidates(inkala))
    # two open cells of one row, both allowing digit d, and d in the first alone survives probing
    found = None
    for row in units()[:9].tolist():
        for a in row:
            for b in row:
                for d in range(9):
                    if a < b and found is None and table[0, a, d] and table[0, b, d] and table[0, b].sum() > 1:
                        trial = table.clone()
                        trial[0, a] = False
                        trial[0, a, d] = True
                        if not bool(probe(trial)[1][0]):
                            found = (a, b, d)
    assert found is not None
    a, b, d = found
    new = torch.zeros_like(table)
    new[0, a, d] = new[0, b, d] = True
    local = new.float() * 0.6
    local[0, a, d] = 0.9  # the first is the more confident
    # together they clash: the plain step would kill the board
    both = torch.where(new.any(-1, keepdim=True), new, table)
    assert bool(probe(both)[1][0])
    out, dead = _commit_in_turn(table, new, local, 9)
    assert not bool(dead[0])
    assert out[0, a].tolist() == [i == d for i in range(9)] and not bool(out[0, b, d])
    assert bool((out <= table).all())
    # and the sampler's narrowing step does the same
    narrowed, gone = _narrow(table, local, "propagate", 0.5, torch.zeros(1, dtype=torch.bool), probe=9)
    assert not bool(gone[0]) and torch.equal(narrowed, out)


def test_recurrent_rounds_start_as_the_identity_and_stay_equivariant():
    from ddsm.models.sudoku_grid import add_rounds

    torch.manual_seed(0)
    base = SudokuDenoiser(d_model=8, n_layers=2, hidden=8)
    for p in base.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, t = _feats(torch.log_softmax(torch.randn(2, 81, 9), -1)), torch.rand(2)
    rec = add_rounds(base, 5)
    assert rec.rounds == 5 and rec.tied_after == 1 and torch.equal(rec(x, t), base(x, t))
    assert sum(p.numel() for p in rec.parameters()) == sum(p.numel() for p in base.parameters()) + sum(
        p.numel() for p in rec.tied.parameters())  # one block's parameters, whatever the rounds
    for p in rec.tied.parameters():
        torch.nn.init.normal_(p, std=0.2)
    out = rec(x, t)
    rec.rounds = 6  # more rounds at sampling than in training: a different function, same shapes
    assert not torch.allclose(rec(x, t), out)
    perm = torch.randperm(9)
    xp = torch.cat([x[..., :9][..., perm], x[..., 9:][..., perm]], -1)
    assert torch.allclose(rec(xp, t), rec(x, t)[..., perm], atol=1e-5)
    with pytest.raises(ValueError):
        add_rounds(rec, 2)


def test_legacy_sudoku_checkpoint_is_the_same_function_on_the_registered_process(proc):
    """A former jacobi_posterior config upgrades to the jacobi process with the same settings; its
    network (evidence + correction from the log-posterior) equals today's (correction from the
    features, evidence added by the process)."""
    legacy = {"process": {"name": LEGACY_PROCESS, "options": {"K": 9, "T": 5.0, "n_train_times": 128, "focus": 0.8,
                                                              "focus_tau_min": 0.3, "focus_tau_max": 3.5}},
              "model": {"name": "sudoku", "options": {"in_channels": 9, "out_channels": 9, "d_model": 8,
                                                      "n_layers": 1, "hidden": 8}}}
    new = upgrade_config(legacy)
    assert new["process"]["name"] == "jacobi" and new["model"]["options"]["in_channels"] == 18
    p = JacobiProcess(**new["process"]["options"])
    assert p.config() == sudoku_process().config()
    torch.manual_seed(0)
    net = SudokuDenoiser(**new["model"]["options"])
    for q in net.parameters():
        torch.nn.init.normal_(q, std=0.2)
    x0, t = base_grids(2, seed=1), torch.full((2,), 0.6)
    v = p.sample_noisy(x0, t, generator=torch.Generator().manual_seed(0)).xt
    loglik = category_loglik(p.stick_stats(v, p.native_time(t)))
    logpost = torch.log_softmax(loglik, -1)
    with torch.no_grad():
        old_logits = logpost + net(_feats(logpost.float()), t.float()).double()  # what the old network returned
        new_logits = p.model_output(net, v, t)
    torch.testing.assert_close(torch.log_softmax(new_logits, -1), torch.log_softmax(old_logits, -1),
                               atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="self-conditioning"):
        upgrade_config({**legacy, "process": {"name": LEGACY_PROCESS, "options": {"self_condition": True}}})


def test_context_scale_multiplies_the_correction_only(proc):
    """Generation's context scale lambda forms p(k) ~ q(v | k) exp(lambda c_k): at 0 the network
    is ignored (two different networks give the same grids), at 1 it is the plain sampler, and
    otherwise it is the sampler with the network's output multiplied by lambda."""
    from pathlib import Path

    from ddsm.sudoku.generate import generate_grids, scaled_correction
    from ddsm.sudoku.model_io import SudokuModel

    def model(seed: int) -> SudokuModel:
        torch.manual_seed(seed)
        net = SudokuDenoiser(d_model=8, n_layers=1, hidden=8)
        for p in net.parameters():  # zero-initialised gates would make every network the same
            torch.nn.init.normal_(p, std=0.3)
        return SudokuModel(process=proc, net=net.eval(), config={}, path=Path("."))

    def grids(sm: SudokuModel, **kw) -> torch.Tensor:
        return generate_grids(sm, 2, steps=4, generator=torch.Generator().manual_seed(7), **kw)

    a, b = model(0), model(1)
    assert not torch.equal(grids(a), grids(b))
    assert torch.equal(grids(a, context_scale=0.0), grids(b, context_scale=0.0))
    assert torch.equal(grids(a, context_scale=1.0), grids(a))
    doubled = SudokuModel(process=proc, net=a.net, config={}, path=Path("."))
    object.__setattr__(doubled, "model_fn", scaled_correction(a.model_fn, 2.0))
    assert torch.equal(grids(a, context_scale=2.0), grids(doubled))
    x, t = torch.randn(2, 81, 18), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(scaled_correction(a.model_fn, 2.0)(x, t), 2.0 * a.model_fn(x, t))
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="context_scale"):
            grids(a, context_scale=bad)


def test_generation_substeps_override_the_models_for_one_run(proc):
    """``generate_grids(substeps=m)`` runs m SDE sub-steps per network call on a copy of the
    process: the loaded model keeps its own setting, and None or the model's own value change
    nothing."""
    from pathlib import Path

    from ddsm.sudoku.generate import generate_grids
    from ddsm.sudoku.model_io import SudokuModel

    torch.manual_seed(0)
    net = SudokuDenoiser(d_model=8, n_layers=1, hidden=8)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    sm = SudokuModel(process=proc, net=net.eval(), config={}, path=Path("."))
    own = proc.substeps

    def grids(**kw) -> torch.Tensor:
        return generate_grids(sm, 2, steps=3, dilation=2, generator=torch.Generator().manual_seed(7), **kw)

    plain = grids()
    assert torch.equal(grids(substeps=own), plain)
    assert not torch.equal(grids(substeps=own * 4), plain)
    assert proc.substeps == own and sm.process is proc
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="substeps"):
            grids(substeps=bad)


def test_extrapolated_correction_adds_alpha_times_the_change_since_the_previous_call():
    """The multistep rule: the first call of a run returns the centred correction, each later one
    c_n + alpha (c_n - c_{n-1}), both centred; a new run (another batch shape) starts afresh."""
    from ddsm.sampling import ExtrapolatedCorrection

    outs = iter([torch.tensor([[[1.0, 2.0, 6.0]]]), torch.tensor([[[3.0, 0.0, 3.0]]]),
                 torch.tensor([[[5.0, 5.0, 5.0], [0.0, 3.0, 0.0]]])])
    fn = ExtrapolatedCorrection(lambda x, t, cond=None: next(outs), 0.5)
    x, t = torch.zeros(1, 1, 3), torch.ones(1)
    first = fn(x, t)
    assert torch.allclose(first, torch.tensor([[[-2.0, -1.0, 3.0]]]))
    second = fn(x, t)  # centred (1, -2, 1); change (3, -1, -2)
    assert torch.allclose(second, torch.tensor([[[2.5, -2.5, 0.0]]]))
    third = fn(torch.zeros(1, 2, 3), t)  # another shape: a new run, nothing to extrapolate from
    assert torch.allclose(third, torch.tensor([[[0.0, 0.0, 0.0], [-1.0, 2.0, -1.0]]]))


def test_generation_extrapolation_changes_the_run_and_refuses_bad_values(proc):
    """``generate_grids(extrapolate=0)`` is the plain run; a positive alpha changes the held
    correction (so the grids, same seed); negative or non-finite values raise."""
    from pathlib import Path

    from ddsm.sudoku.generate import generate_grids
    from ddsm.sudoku.model_io import SudokuModel

    torch.manual_seed(0)
    net = SudokuDenoiser(d_model=8, n_layers=1, hidden=8)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    sm = SudokuModel(process=proc, net=net.eval(), config={}, path=Path("."))

    def grids(**kw) -> torch.Tensor:
        return generate_grids(sm, 4, steps=4, generator=torch.Generator().manual_seed(7), **kw)

    plain = grids()
    assert torch.equal(grids(extrapolate=0.0), plain)
    assert not torch.equal(grids(extrapolate=1.0), plain)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="extrapolate"):
            grids(extrapolate=bad)
