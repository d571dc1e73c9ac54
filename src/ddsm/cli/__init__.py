"""``ddsm`` command line: train, sample, score, evaluate, demo, list, sudoku.

One module per command (``train``, ``sample``, ``score``, ``evaluate``, ``listing``, ``demo``,
``sudoku``), each with ``add_parser(sub)`` and ``run(args) -> int``; shared checks and helpers are
in ``common``. Only this package seeds the global random generators and nothing outside it
imports it.

Bad input never produces a traceback: every rejection is one line ``ddsm: error: ...`` on stderr
and exit code 2; outputs are written to a temporary name and renamed when complete, and an
existing output is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from ..errors import DDSMInputError
from . import demo, evaluate, listing, sample, score, sudoku, train

logger = logging.getLogger("ddsm")

#: the sub-commands in the order ``ddsm --help`` lists them
COMMANDS = (train, sample, score, demo, sudoku, evaluate, listing)


def build_parser() -> argparse.ArgumentParser:
    """The ``ddsm`` parser with every sub-command; each sets ``func`` to its ``run``."""
    from ..checkpoint import ddsm_version

    p = argparse.ArgumentParser(prog="ddsm", description="Dirichlet diffusion score models and other discrete "
                                "diffusion processes for biological sequences.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--version", action="version", version=f"ddsm {ddsm_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    _show_defaults(p)
    return p


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's --help shows each option's default."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                _show_defaults(sp)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``ddsm`` (``argv``: the arguments after the program name); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in checkpoints
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from ..distributed import is_main_process
    from ..training import TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except DDSMInputError as e:
        if is_main_process():  # under torchrun every rank raises the same error
            print(f"ddsm: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # non-finite loss: the message names the step and the last checkpoint
        if is_main_process():
            print(f"ddsm: error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:  # SIGTERM/SIGINT: checkpoint written; the message names the step
        if is_main_process():
            print(f"ddsm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ddsm: interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser"]
