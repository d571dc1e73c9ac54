"""Sudoku's process: the registered ``jacobi`` process (DDSM, posterior output) with Sudoku's
settings.

There is one Jacobi process for every task. The Sudoku network is an ordinary backbone of it: it
reads the process's features (local posterior and log-posterior of each cell) and returns the
correction that the process adds to the exact local evidence; the stick score follows from the
mixture identity in the process, as for DNA and text.

Checkpoints of the former Sudoku-only process (``jacobi_posterior``) hold the same function and
load through :mod:`ddsm.legacy`.
"""

from __future__ import annotations

from typing import Any

from ..processes.jacobi import JacobiProcess

#: Sudoku's settings of the jacobi process: T = 5 (every stick within e^-5 of stationarity at the
#: prior), a training grid of 128 times, 80 % of training times where digits get decided, two
#: features per digit (the digit-equivariant network reads (posterior, log) pairs), 8 SDE sub-steps
#: per network call and the correction held as returned (what the generation tables were measured
#: with; ``--substeps`` and ``--extrapolate`` override), and no self-conditioning estimate (the
#: bundled network reads none)
SUDOKU_PROCESS: dict[str, Any] = {"K": 9, "T": 5.0, "n_train_times": 128, "focus": 0.8,
                                  "focus_tau_min": 0.3, "focus_tau_max": 3.5, "focus_law": "window",
                                  "fine_log": False, "substeps": 8, "extrapolate": 0.0, "self_condition": False}


def sudoku_process(**options: Any) -> JacobiProcess:
    """The ``jacobi`` process with Sudoku's settings, ``options`` overriding them (posterior
    output only: the network is a posterior backbone)."""
    opts = {**SUDOKU_PROCESS, **options}
    if opts.get("output", "posterior") != "posterior":
        raise ValueError("Sudoku networks are posterior backbones: the jacobi process needs output='posterior'")
    if opts["K"] != 9:
        raise ValueError(f"Sudoku has K = 9 digits, got K = {opts['K']}")
    return JacobiProcess(**opts)
