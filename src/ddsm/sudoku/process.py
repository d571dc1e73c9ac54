"""Sudoku's process: the registered ``jacobi`` process (DDSM, posterior output) with Sudoku's
settings, and the upgrade of checkpoints saved with the former Sudoku-only process.

There is one Jacobi process for every task. The Sudoku network is an ordinary backbone of it: it
reads the process's features (local posterior and log-posterior of each cell) and returns the
correction that the process adds to the exact local evidence; the stick score follows from the
mixture identity in the process, as for DNA and text.

Checkpoints saved before (``process.name = "jacobi_posterior"``, network input = the local
log-posterior alone, output = evidence + correction) hold the same function: that network formed
[exp(log-posterior), clamp(log-posterior, -30) / 10] itself, which is exactly the ``jacobi``
process's features, and added the evidence to its centred correction, which the ``jacobi`` process
now does. :func:`upgrade_config` rewrites such a config; the weights load unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import DDSMInputError
from ..processes.jacobi import JacobiProcess

#: Sudoku's settings of the jacobi process: T = 5 (every stick within e^-5 of stationarity at the
#: prior), a training grid of 128 times, 80 % of training times where digits get decided
SUDOKU_PROCESS: dict[str, Any] = {"K": 9, "T": 5.0, "n_train_times": 128, "focus": 0.8,
                                  "focus_tau_min": 0.3, "focus_tau_max": 3.5}
#: the name under which checkpoints of the former Sudoku-only process were saved
LEGACY_PROCESS = "jacobi_posterior"


def sudoku_process(**options: Any) -> JacobiProcess:
    """The ``jacobi`` process with Sudoku's settings, ``options`` overriding them (posterior
    output only: the network is a posterior backbone)."""
    opts = {**SUDOKU_PROCESS, **options}
    if opts.get("output", "posterior") != "posterior":
        raise ValueError("Sudoku networks are posterior backbones: the jacobi process needs output='posterior'")
    if opts["K"] != 9:
        raise ValueError(f"Sudoku has K = 9 digits, got K = {opts['K']}")
    return JacobiProcess(**opts)


def upgrade_config(config: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """A copy of a Sudoku ``config`` in today's form (a former ``jacobi_posterior`` one rewritten).

    Raises:
        DDSMInputError: a self-conditioned former checkpoint (self-conditioning was measured to
            give no gain and is gone with the separate process; retrain without it).
    """
    config = copy.deepcopy(config)
    if config.get("process", {}).get("name") != LEGACY_PROCESS:
        return config
    opts = dict(config["process"].get("options", {}))
    model = config.setdefault("model", {}).setdefault("options", {})
    if opts.pop("self_condition", False) or model.pop("self_condition", False):
        raise DDSMInputError(f"{where} is a self-conditioned Sudoku model of an earlier version; "
                             f"self-conditioning is no longer supported: retrain it with bench/train_sudoku.py")
    config["process"] = {"name": JacobiProcess.name, "options": {**SUDOKU_PROCESS, **opts, "output": "posterior"}}
    model["in_channels"] = 2 * int(model.get("out_channels", 9))
    return config
