"""Run folders named by what differs: default runs keep their names, every other setting is in the name, a name the
user gives is checked, and the answers file keeps the course's name."""

from __future__ import annotations

import pytest

from helpers.errors import UserError
from helpers.runs import RunConfig, resolve_profile
from helpers.run_names import check_run_name, show_value


def test_default_runs_keep_their_names():
    assert RunConfig().run_name(50) == "tiny_epoch-3_size-50_ratio-1"
    assert RunConfig(support_ratio=0.25, num_epoch=1, data_size=10, seed=2).run_name(50) == \
        "tiny_epoch-1_size-10_ratio-0.25_seed-2"


def test_every_other_setting_is_in_the_name_and_the_answers_file_keeps_its_name():
    base = RunConfig()
    changed = {"beta": 0.2, "learning_rate": 1e-3, "spread": True, "data": "mine/rows.json",
               "eval_data": "mine/eval.json", "test_prompts": "mine/tests.json", "model": "org/some-model",
               "skip_bad_rows": True, "split_rule": "course", "holdout": "none"}
    names = {base.run_name(50)}
    for field, value in changed.items():
        config = RunConfig(**{field: value})
        names.add(config.run_name(50))
        assert config.run_name(50).startswith(base.run_name(50) + "_"), field
        assert config.answers_file_name(50) == base.answers_file_name(50) == "epoch-3_size-50_ratio-1.json"
    assert len(names) == len(changed) + 1  # no two settings share a folder
    assert RunConfig(beta=0.2, learning_rate=1e-3).run_name(50) == "tiny_epoch-3_size-50_ratio-1_beta-0.2_lr-0.001"
    assert RunConfig(beta=0.2).run_name(50) != RunConfig(beta=0.1).run_name(50)


def test_a_changed_profile_is_in_the_name():
    config = RunConfig()
    profile = resolve_profile(config, check_hardware=False)
    assert config.run_name(50, profile) == config.run_name(50)  # the profile as it is: nothing added
    plain = profile.replace(dpo_loss_type=("sigmoid",), dpo_loss_weights=None, beta=0.1)
    assert config.run_name(50, plain) == "tiny_epoch-3_size-50_ratio-1_loss-sigmoid_weights-none_beta-0.1"
    assert config.run_name(50, profile.replace(lora_r=8, lora_alpha=8)).endswith("_r-8_alpha-8")


def test_long_or_unsafe_values_become_a_short_stable_hash():
    path = "/home/someone/my data/labelled rows (v2).json"
    shown = show_value(path)
    assert shown == show_value(path) and shown != show_value(path.replace("v2", "v3"))
    assert shown.startswith("labelled_rows_v2-") and len(shown) <= 32
    assert all(c.isalnum() or c in "._+-" for c in RunConfig(data=path).run_name(50))


def test_a_given_name_replaces_the_rule_and_is_checked():
    assert RunConfig(beta=0.2, name="beta-low").run_name(50) == "beta-low"
    for bad in ("../up", "", "a b", "x/y", ".hidden", "run.earlier-1", "a" * 101, 3):
        with pytest.raises(UserError, match=r"run_name \(--run-name\)"):
            RunConfig(name=bad)
    assert check_run_name(None) is None


def test_a_bad_run_name_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-m", "helpers", "run", "--support-ratio", "1", "--run-name", "../up",
                           "--dry-run"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-500:]
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "run_name (--run-name)" in done.stderr
