"""``ddsm list``: the registered processes, the bundled models and the backbones."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm list``."""
    ls = sub.add_parser("list", help="list processes, bundled models and backbones")
    ls.add_argument("what", choices=["processes", "models", "backbones"],
                    help="processes: the corruption processes; models: the bundled models (name, data, classes, "
                         "length) and the backbones; backbones: the networks only")
    ls.set_defaults(func=run)
    return ls


def run(args: argparse.Namespace) -> int:
    """Print the list asked for on stdout."""
    from ..models import MODELS
    from ..processes import PROCESSES

    if args.what == "processes":
        for name in sorted(PROCESSES):
            cls = PROCESSES[name]
            opts = ", ".join(f"{k}={v!r}" for k, v in cls.options().items())
            print(f"{name:16s} {cls.description}\n{'':16s} options: {opts or '-'}")
        return 0
    if args.what == "models":
        from ..api import bundled_models

        print("bundled models (use the name in place of a checkpoint folder):")
        for info in bundled_models():
            print(f"  {info['name']:14s} data {info['data']}, {info['length']} letters, "
                  f"classes ({info['label_key']}): {', '.join(info['classes']) or '-'}")
        print("backbones (ddsm train --model):")
    for name in sorted(MODELS):
        print(f"  {name:14s} {getattr(MODELS[name], 'description', '')}")
    return 0
