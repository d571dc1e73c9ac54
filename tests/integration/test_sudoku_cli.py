"""End-to-end ``ddsm sudoku solve`` / ``generate`` with a tiny model trained in the test.

Runs in-process through ``ddsm.cli.main`` on the CPU. Bad input must give exit code 2 and one
``ddsm: error: ...`` line; a bad puzzle only fails its own row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ddsm.cli import main
from ddsm.sudoku.board import is_solution, is_valid_grid, parse_board
from ddsm.sudoku.training import SudokuRecipe, sudoku_train_config, train_sudoku

HARD = "85...24..72......9..4.........1.7..23.5...9...4...........8..7..17..........36.4."
HARD_SOL = "859612437723854169164379528986147352375268914241593786432981675617425893598736241"
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
FAST = ["--steps", "3", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sudoku") / "ckpt"
    recipe = SudokuRecipe(pool_size=8, model={"d_model": 8, "n_layers": 1, "hidden": 8}, process={"n_train_times": 8})
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_sudoku(recipe, sudoku_train_config(steps=2, batch_size=4, warmup_steps=1), out)
    finally:
        torch.set_num_threads(n)
    return out


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def one_error_line(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddsm: error: "), err


def test_solve_end_to_end_with_bad_rows(tmp_path, tiny_model, capsys):
    src = tmp_path / "puzzles.csv"
    conflict = "88" + HARD[2:]
    src.write_text("puzzle,solution\n"
                   f"{HARD},{HARD_SOL}\n{EASY},\n{HARD[:-1]},\n{'x' + HARD[1:]},\n{conflict},\n"
                   f"{HARD.replace('.', '0')},{HARD_SOL}\n")
    out = tmp_path / "out.csv"
    code, stdout, _ = run(capsys, "sudoku", "solve", src, "-o", out, "--model", tiny_model, "--budget", "2",
                          "--particles", "2", "--seed", "3", *FAST)
    assert code == 0
    rows = read(out)
    assert [r["puzzle"] for r in rows][:2] == [HARD, EASY] and len(rows) == 6
    for key in ("solution", "valid", "samples_used", "seconds", "solver", "given_solution", "error"):
        assert key in rows[0]
    assert all(r["seed"] == "3" for r in rows)
    for r in (rows[0], rows[1], rows[5]):
        assert r["valid"] == "True" and r["error"] == ""
        assert bool(is_solution(parse_board(r["solution"])[None], parse_board(r["puzzle"])[None])[0])
        assert r["solver"] in ("constraint-aware", "search", "propagation")
    assert rows[1]["solver"] == "propagation" and rows[1]["samples_used"] == "0"
    assert rows[0]["matches_given_solution"] == "True"
    assert "81" in rows[2]["error"] and "position 1" in rows[3]["error"] and "conflicting" in rows[4]["error"]
    assert all(r["valid"] == "False" and r["solution"] == "" for r in rows[2:5])
    assert "solved 3/6" in stdout and "median" in stdout and "3 bad puzzle" in stdout

    # exists without --force: refused, untouched
    before = out.read_text()
    code, _, err = run(capsys, "sudoku", "solve", src, "-o", out, "--model", tiny_model, *FAST)
    assert code == 2 and out.read_text() == before
    one_error_line(err)


def test_solve_without_search_and_givens_only_keep_givens(tmp_path, tiny_model, capsys):
    src = tmp_path / "p.txt"
    src.write_text(f"{HARD}\n{EASY}\n")  # plain one-per-line file
    for extra in (["--no-search", "--budget", "1", "--particles", "1"], ["--givens-only"]):
        out = tmp_path / f"o{len(extra)}.csv"
        code, stdout, _ = run(capsys, "sudoku", "solve", src, "-o", out, "--model", tiny_model, *extra, *FAST)
        assert code == 0 and "solved" in stdout
        for r in read(out):
            sol, puz = parse_board(r["solution"]), parse_board(r["puzzle"])
            given = puz >= 0
            assert torch.equal(sol[given], puz[given])
            assert (r["valid"] == "True") == bool(is_solution(sol[None], puz[None])[0])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_generate(tmp_path, tiny_model, capsys, precision):
    out = tmp_path / "grids.csv"
    code, stdout, _ = run(capsys, "sudoku", "generate", "-n", "3", "-o", out, "--model", tiny_model,
                          "--time-dilation", "2", "--seed", "5", "--precision", precision, *FAST)
    assert code == 0 and "generated 3 grids" in stdout and f"({precision})" in stdout
    rows = read(out)
    assert len(rows) == 3
    for r in rows:
        g = parse_board(r["grid"])
        assert bool((g >= 0).all()) and r["valid"] == str(bool(is_valid_grid(g[None])[0])) and r["seed"] == "5"


def test_generate_with_substeps_reports_the_network_calls(tmp_path, tiny_model, capsys):
    out = tmp_path / "grids.csv"
    code, stdout, _ = run(capsys, "sudoku", "generate", "-n", "2", "-o", out, "--model", tiny_model,
                          "--time-dilation", "2", "--substeps", "4", "--seed", "3", *FAST)
    assert code == 0 and "3 steps (6 network calls, 4 sub-steps each)" in stdout
    assert [r["mode"] for r in read(out)] == ["model"] * 2
    for bad in (["--substeps", "0"], ["--constrained", "--substeps", "4"]):
        out = tmp_path / "bad.csv"
        code, _, err = run(capsys, "sudoku", "generate", "-n", "2", "-o", out, "--model", tiny_model, *bad, *FAST)
        assert code == 2 and not out.exists()
        one_error_line(err)


@pytest.mark.parametrize("flags, said, mode", [
    (["--context-scale", "2"], ["context scale 2"], "model:context_scale=2"),
    (["--extrapolate", "0.5"], ["extrapolation 0.5"], "model:extrapolate=0.5"),
    (["--context-scale", "2", "--extrapolate", "0.5"], ["context scale 2", "extrapolation 0.5"],
     "model:context_scale=2:extrapolate=0.5"),
])
def test_generate_labels_sampler_settings_that_are_not_the_model_as_trained(tmp_path, tiny_model, capsys,
                                                                            flags, said, mode):
    out = tmp_path / "grids.csv"
    code, stdout, _ = run(capsys, "sudoku", "generate", "-n", "2", "-o", out, "--model", tiny_model, *flags,
                          "--seed", "3", *FAST)
    assert code == 0 and all(words in stdout for words in said)
    assert [r["mode"] for r in read(out)] == [mode] * 2


@pytest.mark.parametrize("bad", [["--context-scale", "-1"], ["--context-scale", "nan"],
                                 ["--constrained", "--context-scale", "2"], ["--extrapolate", "-1"],
                                 ["--extrapolate", "nan"], ["--constrained", "--extrapolate", "0.5"]])
def test_generate_refuses_bad_sampler_settings(tmp_path, tiny_model, capsys, bad):
    out = tmp_path / "bad.csv"
    code, _, err = run(capsys, "sudoku", "generate", "-n", "2", "-o", out, "--model", tiny_model, *bad, *FAST)
    assert code == 2 and not out.exists()
    one_error_line(err)


@pytest.mark.parametrize("case", ["missing", "no_column", "empty", "not_sudoku", "dilation", "budget", "probe"])
def test_bad_files_and_args(tmp_path, tiny_model, capsys, case):
    src = tmp_path / "p.csv"
    src.write_text(f"puzzle\n{HARD}\n")
    model = tiny_model
    args: list = []
    if case == "missing":
        src = tmp_path / "nope.csv"
    elif case == "no_column":
        src.write_text(f"board\n{HARD}\n")
    elif case == "empty":
        src.write_text("")
    elif case == "not_sudoku":
        model = tmp_path
    elif case == "dilation":
        args = ["--time-dilation", "0.5"]
    elif case == "budget":
        args = ["--budget", "0"]
    elif case == "probe":
        args = ["--probe", "10"]
    out = tmp_path / "out.csv"
    code, _, err = run(capsys, "sudoku", "solve", src, "-o", out, "--model", model, *args, *FAST)
    assert code == 2 and not out.exists()
    one_error_line(err)


def test_bundled_model_loads():
    from ddsm.sudoku.model_io import BUNDLED_DIR, load_sudoku_model

    if not (BUNDLED_DIR / "config.json").is_file():
        pytest.skip("no bundled Sudoku model in this checkout")
    sm = load_sudoku_model()
    assert sm.process.K == 9 and sm.config["model"]["name"] == "sudoku"
    size = sum(p.stat().st_size for p in BUNDLED_DIR.iterdir())
    assert size < 10 * 2**20


def test_compiled_network_computes_what_the_eager_one_does(tmp_path, tiny_model, capsys, monkeypatch):
    """torch.compile changes speed only: a compiled loaded network computes what the eager one does
    (fp32, so up to rounding), for any batch size; training and the CLI route through the same
    wrapper (checked with a spy: compiling a training step takes over a minute on a CPU)."""
    import ddsm.sudoku.model_io as model_io
    from ddsm.training import loop

    eager = model_io.load_sudoku_model(tiny_model, precision="fp32")
    compiled = model_io.load_sudoku_model(tiny_model, precision="fp32", compile=True)
    assert compiled.compiled and not eager.compiled
    g = torch.Generator().manual_seed(0)
    for b in (5, 3):  # a second batch size must not need a second graph (dynamic shapes)
        lp = torch.log_softmax(torch.randn(b, 81, 9, generator=g), -1)
        x = torch.cat([lp.exp(), lp.clamp_min(-30.0) / 10.0], -1)
        t = torch.rand(b, generator=g)
        with torch.no_grad():
            torch.testing.assert_close(compiled.model_fn(x, t), eager.model_fn(x, t), atol=1e-4, rtol=1e-4)

    wrapped: list = []

    def spy(net, **kw):
        wrapped.append(type(net).__name__)
        return net

    monkeypatch.setattr(loop, "compile_or_eager", spy)
    monkeypatch.setattr(model_io, "compile_or_eager", spy)
    recipe = SudokuRecipe(pool_size=8, model={"d_model": 8, "n_layers": 1, "hidden": 8}, process={"n_train_times": 8})
    train_sudoku(recipe, sudoku_train_config(steps=2, batch_size=4, warmup_steps=1, compile=True), tmp_path / "ckpt")
    assert wrapped == ["SudokuDenoiser"]
    code, stdout, _ = run(capsys, "sudoku", "generate", "-n", "2", "-o", tmp_path / "g.csv", "--model",
                          tmp_path / "ckpt", "--compile", *FAST)
    assert code == 0 and "generated 2 grids" in stdout and wrapped == ["SudokuDenoiser"] * 2


def test_demo_shows_first_the_puzzles_the_rules_leave_open(tmp_path):
    from ddsm.sudoku.demo import solve_demo
    from ddsm.sudoku.model_io import BUNDLED_DIR

    if not (BUNDLED_DIR / "config.json").is_file():
        pytest.skip("no bundled Sudoku model in this checkout")
    said: list[str] = []
    solve_demo(tmp_path, seed=0, quiet=True, say=said.append, n=3)
    rows = (tmp_path / "sudoku_solutions.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(r.split(",")[2] == "True" for r in rows)
    # 2 of the 11 are left open by propagation with probing: they come first, and need the sampler
    assert [r.split(",")[3] != "propagation" for r in rows] == [True, True, False]
    assert "2 of 11 are left open" in said[0]


def test_generate_constrained_is_valid_and_labelled(tmp_path, tiny_model, capsys):
    out = tmp_path / "grids.csv"
    code, stdout, _ = run(capsys, "sudoku", "generate", "--constrained", "-n", "3", "-o", out, "--model",
                          tiny_model, "--seed", "2", *FAST)
    assert code == 0 and "constraint-aware" in stdout and "not the model alone" in stdout
    rows = read(out)
    assert len(rows) == 3
    grids = torch.stack([parse_board(r["grid"]) for r in rows])
    assert bool(is_valid_grid(grids).all()) and all(r["valid"] == "True" for r in rows)
    assert all(r["mode"].startswith("constrained:") for r in rows)


def test_recurrent_rounds_warm_start_then_resume(tmp_path, tiny_model):
    """A run with tied rounds starts from a plain network as the same function, and resuming it
    continues the step count, history and noise where the first invocation stopped."""
    from ddsm.checkpoint import load_config
    from ddsm.sudoku.model_io import load_sudoku_model

    out = tmp_path / "rec"
    model = {"d_model": 8, "n_layers": 1, "hidden": 8, "rounds": 3}
    recipe = SudokuRecipe(pool_size=8, model=model, process={"n_train_times": 8})
    train_sudoku(recipe, sudoku_train_config(steps=2, batch_size=4, warmup_steps=1, lr=1e-12), out,
                 init_from=tiny_model)
    plain, rec = load_sudoku_model(tiny_model), load_sudoku_model(out)
    assert rec.net.rounds == 3 and rec.net.tied is not None
    lp = torch.randn(2, 81, 9).log_softmax(-1)
    x = torch.cat([lp.exp(), lp.clamp_min(-30.0) / 10.0], -1)
    t = torch.full((2,), 0.5)
    with torch.no_grad():  # lr 0: the tied block is still the identity
        assert torch.allclose(plain.net(x, t), rec.net(x, t), atol=1e-6)
    summary = train_sudoku(recipe, sudoku_train_config(steps=4, batch_size=4, warmup_steps=1, lr=1e-12), out,
                           resume=True)
    config = load_config(out)
    assert config["step"] == 4 and config["init_from"]["path"] == str(tiny_model)
    assert [h["step"] for h in summary["history"]] == [2, 4]
    with pytest.raises(Exception, match="cannot resume"):
        train_sudoku(SudokuRecipe(pool_size=8, model={**model, "rounds": 2}, process={"n_train_times": 8}),
                     sudoku_train_config(steps=6, batch_size=4, warmup_steps=1, lr=1e-12), out, resume=True)
