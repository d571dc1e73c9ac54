"""``torch.compile`` that never stops a run: fall back to the eager network when compiling fails.

Compilation is lazy (it happens on the first call), and on a CPU it needs a working C++ compiler,
which a user's machine may lack; a failure there must cost speed, not the run. Used by the generic
training loop, the Sudoku training loop and the Sudoku samplers.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch

logger = logging.getLogger(__name__)


class CompiledOrEager:
    """``compiled`` (e.g. ``torch.compile(net)``) that falls back to ``net`` when it raises.

    If the first call raises, a warning is logged, the global RNG states are put back and the same
    call runs eagerly, so the fallback changes no random draw. Later calls go straight to whichever
    worked.
    """

    def __init__(self, net: Callable[..., Any], compiled: Optional[Callable[..., Any]]) -> None:
        self.net, self.compiled, self.ok = net, compiled, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.net(*args, **kwargs)
        if self.ok:
            return self.compiled(*args, **kwargs)
        cpu = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 -- any compiler failure: run eagerly instead
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            logger.warning("torch.compile failed (%s: %s); running without compilation", type(e).__name__, first)
            self.compiled = None
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state(cuda)
            return self.net(*args, **kwargs)
        self.ok = True
        return out


def compile_or_eager(net: Callable[..., Any], *, dynamic: Optional[bool] = None) -> Callable[..., Any]:
    """``net`` wrapped in :class:`CompiledOrEager` (``net`` itself where torch.compile is missing).

    Args:
        dynamic: passed to ``torch.compile`` (True: one graph for every batch size, so batches
            that shrink, e.g. the last one of a run, do not recompile).
    """
    if not hasattr(torch, "compile"):
        logger.warning("this torch has no torch.compile; running without compilation")
        return net
    try:
        compiled = torch.compile(net, dynamic=dynamic)
    except Exception as e:  # noqa: BLE001 -- e.g. an unsupported Python version
        logger.warning("torch.compile is unavailable (%s); running without compilation", e)
        return net
    return CompiledOrEager(net, compiled)
