"""Configs saved by earlier versions of ddsm, rewritten into today's form at load time.

One place for every such rewrite, applied by the one loader (:func:`ddsm.api.load_run`) after the
weights' record of their config has been checked against the file as saved. The weights of an
upgraded checkpoint load unchanged.

- ``jacobi_posterior`` (the former Sudoku-only process): its network read the local log-posterior
  alone and formed ``[exp(log-posterior), clamp(log-posterior, -30) / 10]`` itself, which is
  exactly the registered ``jacobi`` process's posterior features, and added the evidence to its
  centred correction, which the ``jacobi`` process now does. So the same weights are a ``jacobi``
  (posterior output) backbone with ``in_channels = 2 K``.
- Sudoku checkpoints without an alphabet: the digits 1-9.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import DDSMInputError

#: the name under which checkpoints of the former Sudoku-only process were saved
LEGACY_POSTERIOR = "jacobi_posterior"
#: that process's settings (they are also Sudoku's settings of today's ``jacobi`` process)
_FORMER_POSTERIOR_DEFAULTS: dict[str, Any] = {"K": 9, "T": 5.0, "n_train_times": 128, "focus": 0.8,
                                              "focus_tau_min": 0.3, "focus_tau_max": 3.5, "focus_law": "window",
                                              "fine_log": False, "substeps": 8, "extrapolate": 0.0,
                                              "self_condition": False}
#: the alphabet of Sudoku boards: digit d is token d - 1
SUDOKU_ALPHABET: dict[str, str] = {"name": "sudoku", "letters": "123456789"}


def upgrade_config(config: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """A copy of ``config`` in today's form (unchanged when it already is).

    Raises:
        DDSMInputError: a self-conditioned former Sudoku checkpoint (self-conditioning was
            measured to give no gain and is gone with the separate process; retrain without it).
    """
    config = copy.deepcopy(config)
    if config.get("process", {}).get("name") == LEGACY_POSTERIOR:
        opts = dict(config["process"].get("options", {}))
        model = config.setdefault("model", {}).setdefault("options", {})
        if opts.pop("self_condition", False) or model.pop("self_condition", False):
            raise DDSMInputError(f"{where} is a self-conditioned Sudoku model of an earlier version; "
                                 f"self-conditioning is no longer supported: retrain it with ddsm sudoku train")
        config["process"] = {"name": "jacobi", "options": {**_FORMER_POSTERIOR_DEFAULTS, **opts, "output": "posterior"}}
        model["in_channels"] = 2 * int(model.get("out_channels", 9))
    if config.get("model", {}).get("name") == "sudoku" and "alphabet" not in config:
        config["alphabet"] = dict(SUDOKU_ALPHABET)
    return config
