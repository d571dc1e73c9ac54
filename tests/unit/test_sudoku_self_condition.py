"""Self-conditioning of the Sudoku process and network, and the network's precision setting."""

from __future__ import annotations

import pytest
import torch

from ddsm.sampling import sample
from ddsm.sudoku.board import is_solution, keeps_givens, parse_board
from ddsm.sudoku.generator import base_grids
from ddsm.sudoku.model import SudokuDenoiser, add_self_conditioning
from ddsm.precision import native_bf16, resolve_precision
from ddsm.sudoku.process import PosteriorJacobiProcess
from ddsm.sudoku.propagation import candidates, propagate

K = 9
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def _random_net(**kw) -> SudokuDenoiser:
    torch.manual_seed(0)
    net = SudokuDenoiser(d_model=8, n_layers=2, hidden=8, **kw)
    for p in net.parameters():  # zero-initialised gates would make the tests trivial
        torch.nn.init.normal_(p, std=0.2)
    return net.eval()


@pytest.fixture(scope="module")
def procs() -> tuple[PosteriorJacobiProcess, PosteriorJacobiProcess]:
    return PosteriorJacobiProcess(K=K, n_train_times=4), PosteriorJacobiProcess(K=K, n_train_times=4, self_condition=True)


def test_widened_network_computes_what_the_trained_one_did():
    base = _random_net()
    net = add_self_conditioning(base)
    assert net.self_condition and net.in_channels == 2 * K
    x = torch.log_softmax(torch.randn(3, 81, K), -1)
    t = torch.rand(3)
    with torch.no_grad():
        ref = base(x, t)
        for est in (torch.zeros(3, 81, K), torch.softmax(torch.randn(3, 81, K), -1)):
            assert torch.equal(net(torch.cat([x, est], -1), t), ref)
    with pytest.raises(ValueError):
        add_self_conditioning(net)
    with pytest.raises(ValueError):  # the estimate channels are not optional
        net(x, t)


def test_self_conditioned_network_stays_digit_equivariant():
    net = _random_net(in_channels=2 * K, self_condition=True)
    x = torch.cat([torch.log_softmax(torch.randn(2, 81, K), -1), torch.softmax(torch.randn(2, 81, K), -1)], -1)
    t = torch.rand(2)
    with torch.no_grad():
        out = net(x, t)
        assert out.shape == (2, 81, K)
        perm = torch.randperm(K)
        moved = torch.cat([x[..., :K][..., perm], x[..., K:][..., perm]], -1)
        assert torch.allclose(net(moved, t), out[..., perm], atol=1e-5)
        # the estimate is used: a different estimate gives different logits
        assert not torch.allclose(net(torch.cat([x[..., :K], torch.zeros_like(x[..., K:])], -1), t), out)


def test_state_carries_the_estimate_and_the_sticks_move_as_without_it(procs):
    plain, sc = procs
    net = _random_net(in_channels=2 * K, self_condition=True)
    g = torch.Generator().manual_seed(0)
    state = sc.prior((2, 81), generator=g)
    assert state.shape == (2, 81, 2 * K - 1) and bool((sc.estimate(state) == 0).all())
    assert plain.prior((2, 81)).shape == (2, 81, K - 1) and plain.estimate(plain.prior((2, 81))) is None
    t, s = torch.full((2,), 0.6, dtype=torch.float64), torch.full((2,), 0.55, dtype=torch.float64)
    out = sc.model_output(net, state, t)
    assert out.shape == (2, 81, 2 * K - 1)
    probs = out[..., K - 1 :]
    assert torch.allclose(probs.sum(-1), torch.ones(2, 81, dtype=torch.float64))
    # the score part is the mixture score of the posterior, as for the plain process
    stats = sc.stick_stats(sc.sticks(state), t)
    assert torch.equal(out[..., : K - 1], sc.mixture_score(probs, stats))
    new = sc.step(out, state, t, s, generator=torch.Generator().manual_seed(5))
    ref = plain.step(out[..., : K - 1], sc.sticks(state), t, s, generator=torch.Generator().manual_seed(5))
    assert torch.equal(sc.sticks(new), ref) and torch.equal(sc.estimate(new), probs)
    assert torch.equal(sc.decode(new), plain.decode(ref)) and sc.is_valid(new)
    # the next call sees the estimate
    nxt = sc.model_input(new, s)
    assert torch.allclose(nxt[..., K:], probs.float())
    # imposing givens redraws sticks only
    x0 = base_grids(2, seed=0)
    known = torch.zeros(2, 81, dtype=torch.bool)
    known[:, :10] = True
    imposed = sc.impose(new, x0, known, s, generator=g)
    assert torch.equal(sc.estimate(imposed), sc.estimate(new))
    assert torch.equal(imposed[~known], new[~known]) and not torch.equal(imposed[known], new[known])


def test_training_feeds_a_stop_gradient_first_pass_to_half_the_batch(procs):
    _, sc = procs
    net = _random_net(in_channels=2 * K, self_condition=True).train()
    seen: list[torch.Tensor] = []

    def spy(x, t, cond=None):
        seen.append(x.detach().clone())
        return net(x, t, cond)

    x0 = base_grids(64, seed=1)
    out = sc.loss(spy, x0, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 2 and out.terms.shape == (64, 81)
    first, second = seen
    used = second[..., K:].abs().sum((-1, -2)) > 0
    assert 10 < int(used.sum()) < 54  # about half the batch
    assert first.shape[0] == int(used.sum()) and bool((first[..., K:] == 0).all())
    assert torch.allclose(second[used, :, K:].sum(-1), torch.ones(int(used.sum()), 81))
    assert torch.equal(second[..., :K][used], first[..., :K])  # same noisy boards, same times
    out.loss.backward()
    assert net.inp.weight.grad is not None and float(net.inp.weight.grad[:, 2].abs().sum()) > 0


def test_sampling_and_the_constrained_sampler_run_self_conditioned(procs):
    from ddsm.sudoku.constrained import constrained_sample
    from ddsm.sudoku.model_io import SudokuModel

    _, sc = procs
    net = _random_net(in_channels=2 * K, self_condition=True)
    grids = sample(sc, net, (2, 81), steps=4, generator=torch.Generator().manual_seed(0))
    assert grids.shape == (2, 81) and bool(((grids >= 0) & (grids < K)).all())
    seen: list[torch.Tensor] = []

    class Spy(SudokuModel):
        def model_fn(self, x, t, cond=None):
            seen.append(x.detach().clone())
            return super().model_fn(x, t, cond)

    sm = Spy(sc, net, {}, None)
    puzzles = parse_board(EASY)[None].repeat(2, 1)
    puzzles[1] = -1  # an empty board: nothing is forced, so the network is called every step
    cand, _ = propagate(candidates(puzzles))
    out = constrained_sample(sm, cand, steps=4, generator=torch.Generator().manual_seed(0))
    assert keeps_givens(out.boards, puzzles).all() and is_solution(out.boards[:1], puzzles[:1]).all()
    assert len(seen) >= 2 and bool((seen[0][..., K:] == 0).all())
    # from the second call on, each board's estimate is a posterior over its allowed digits
    assert torch.allclose(seen[1][..., K:].sum(-1), torch.ones(seen[1].shape[:2]))


def test_precision_choice():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    with pytest.raises(ValueError):
        resolve_precision("fp16", cpu)


def test_bf16_network_stays_close_to_fp32(procs):
    from ddsm.sudoku.model_io import SudokuModel

    plain, _ = procs
    net = _random_net()
    x = torch.log_softmax(torch.randn(2, 81, K), -1)
    t = torch.rand(2)
    with torch.no_grad():
        lo = SudokuModel(plain, net, {}, None, "bf16").model_fn(x, t)
        hi = SudokuModel(plain, net, {}, None, "fp32").model_fn(x, t)
    assert lo.dtype == torch.float32 and hi.dtype == torch.float32
    p, q = torch.softmax(lo, -1), torch.softmax(hi, -1)
    assert float((p - q).abs().sum(-1).max()) < 0.1
