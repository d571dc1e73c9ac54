"""Property-based tests: no user-facing parser may crash on arbitrary input.

Every parser either returns a value or raises ``DDSMInputError`` (which the CLI turns into one
error line and exit code 2); per-row Sudoku problems are reported by ``describe_problem`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddsm.cli.common import parse_json_file, set_options
from ddsm.constraints import ForbiddenMotifs, GCWindow, parse_fixed
from ddsm.data import read_sequences
from ddsm.errors import DDSMInputError
from ddsm.sudoku.board import describe_problem, parse_board
from ddsm.sudoku.csvio import read_puzzles

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(max_size=120)
dnaish = st.text(alphabet="ACGTNacgtn.XRY- \n", max_size=40)


def accepts_or_rejects(fn, *args):
    try:
        fn(*args)
    except DDSMInputError as e:
        assert "\n" not in str(e) and str(e)


@FAST
@given(st.one_of(text, dnaish))
def test_fixed_pattern_parser(pattern):
    if not Path(pattern).exists():
        accepts_or_rejects(parse_fixed, pattern, "ACGT", 12)


@FAST
@given(text)
def test_gc_window_parser(value):
    accepts_or_rejects(GCWindow.parse, value)


@FAST
@given(st.lists(st.one_of(text, dnaish), max_size=3))
def test_forbidden_motif_parser(motifs):
    accepts_or_rejects(ForbiddenMotifs.parse, motifs)


@FAST
@given(st.lists(text, max_size=4))
def test_set_option_parser(pairs):
    accepts_or_rejects(set_options, pairs)


@FAST
@given(st.one_of(text, st.recursive(st.none() | st.booleans() | st.integers() | text,
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
                                    max_leaves=8).map(json.dumps)))
def test_config_file_parser(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(content)
    accepts_or_rejects(parse_json_file, str(path))


@FAST
@given(st.one_of(text, st.text(alphabet="0123456789.", min_size=75, max_size=85)))
def test_sudoku_board_parser(board):
    problem = describe_problem(board)
    if problem is None:  # a puzzle the solver accepts must parse
        parse_board(board)
    else:
        assert isinstance(problem, str) and problem


@FAST
@given(st.binary(max_size=300) | text.map(str.encode))
def test_sudoku_csv_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("sudoku") / "puzzles.csv"
    path.write_bytes(data)
    accepts_or_rejects(read_puzzles, str(path))


@FAST
@given(st.binary(max_size=300) | st.text(alphabet="ACGT>\n\t,;#sequence= id", max_size=200).map(str.encode))
def test_sequence_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("seqs") / "input.tsv"
    path.write_bytes(data)
    accepts_or_rejects(read_sequences, str(path))
