"""``ddsm train``'s configuration merge: dataclass default < saved run < --config file < flags."""

from __future__ import annotations

import dataclasses

import pytest

from ddsm.cli import build_parser
from ddsm.cli.common import given_flags, merge_layers
from ddsm.cli.train import TRAIN_FLAGS, choose_process_and_model, train_config
from ddsm.errors import DDSMInputError
from ddsm.processes import DEFAULT_PROCESS
from ddsm.training import TrainConfig


def _args(*flags: str):
    return build_parser().parse_args(["train", "--data", "x.fa", "--out", "o", *flags])


def test_every_train_flag_is_a_field_and_not_given_is_none():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(TRAIN_FLAGS) <= fields
    args = _args()
    assert all(getattr(args, name) is None for name in TRAIN_FLAGS)
    assert given_flags(args, TrainConfig, TRAIN_FLAGS) == {}


def test_flag_types_and_switches_come_from_the_dataclass():
    args = _args("--steps", "7", "--lr", "0.5", "--bf16", "--batch-size", "3")
    assert given_flags(args, TrainConfig, TRAIN_FLAGS) == {"steps": 7, "lr": 0.5, "bf16": True, "batch_size": 3}
    assert isinstance(args.lr, float) and isinstance(args.steps, int)


def test_precedence_default_saved_file_flag():
    saved = {"train": {"steps": 10, "lr": 0.1, "seed": 4}}
    cfg = {"train": {"steps": 20, "lr": 0.2}}
    tc = train_config(_args("--steps", "30"), cfg, saved)
    assert (tc.steps, tc.lr, tc.seed, tc.batch_size) == (30, 0.2, 4, TrainConfig.batch_size)
    tc = train_config(_args(), {}, {})
    assert tc == TrainConfig()


def test_bad_train_config_is_an_input_error():
    with pytest.raises(DDSMInputError, match="training config"):
        train_config(_args(), {"train": {"nope": 1}}, {})
    with pytest.raises(DDSMInputError, match="--steps must be at least 1"):
        train_config(_args("--steps", "0"), {}, {})


def test_merge_layers_later_wins_and_skips_missing_layers():
    assert merge_layers({"a": 1, "b": 1}, None, {"b": 2}, {}) == {"a": 1, "b": 2}


def test_process_and_model_names_and_options():
    choice = choose_process_and_model(_args(), {}, {})
    assert (choice.process, choice.model) == (DEFAULT_PROCESS, "conv")
    saved = {"process": {"name": "masked", "options": {}}, "model": {"name": "mlp", "options": {"hidden": 8}}}
    cfg = {"model": {"options": {"hidden": 16, "n_layers": 2}}}
    choice = choose_process_and_model(_args("--set-model", "hidden=32"), cfg, saved)
    assert (choice.process, choice.model) == ("masked", "mlp")
    assert choice.model_options == {"hidden": 32, "n_layers": 2}
    with pytest.raises(DDSMInputError, match="unknown process"):
        choose_process_and_model(_args("--process", "nope"), {}, {})
