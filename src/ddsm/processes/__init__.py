"""Corruption processes. A new method is one file plus one line in ``PROCESSES``."""

from __future__ import annotations

from typing import Any

from .autoregressive import AutoregressiveProcess
from .base import LossOutput, NoisySample, Process
from .bits import BitsProcess
from .dirichlet_fm import DirichletFMProcess
from .discrete_fm import DiscreteFMProcess
from .jacobi import JacobiProcess
from .jacobi_score import JacobiScoreProcess
from .masked import MaskedProcess
from .uniform import UniformProcess

#: name (the CLI's ``--process``) -> class
PROCESSES: dict[str, type[Process]] = {
    JacobiProcess.name: JacobiProcess,
    MaskedProcess.name: MaskedProcess,
    DiscreteFMProcess.name: DiscreteFMProcess,
    UniformProcess.name: UniformProcess,
    BitsProcess.name: BitsProcess,
    DirichletFMProcess.name: DirichletFMProcess,
    AutoregressiveProcess.name: AutoregressiveProcess,
}

#: the process ``ddsm train`` and ``ddsm.api.fit`` use when none is named (DDSM itself)
DEFAULT_PROCESS: str = JacobiProcess.name


def build_process(name: str, K: int, **options: Any) -> Process:
    """Instantiate a registered process by name."""
    if name not in PROCESSES:
        raise KeyError(f"unknown process {name!r}; known: {', '.join(sorted(PROCESSES))}")
    return PROCESSES[name](K=K, **options)


__all__ = ["PROCESSES", "DEFAULT_PROCESS", "Process", "NoisySample", "LossOutput", "build_process", "JacobiProcess",
           "JacobiScoreProcess"]
