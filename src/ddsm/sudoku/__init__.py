"""Sudoku: boards, rules, a grid generator, a structured denoiser and solvers."""
