"""``ddsm sudoku ...`` sub-commands (placeholder until the Sudoku work lands)."""

from __future__ import annotations

import argparse


def add_sudoku_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ddsm sudoku`` on the top-level sub-parser collection."""
    sub.add_parser("sudoku", help="generate and solve Sudoku boards (not available yet)")
