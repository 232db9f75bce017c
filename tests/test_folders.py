"""Crash-safe folders: what counts as complete (a COMPLETE manifest, a Trainer checkpoint), what a crash leaves and
how the next writer deals with it, and the lock that keeps a second process out of a folder in use."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import folders
from helpers.errors import UserError
from helpers.tiny_model import RECIPE

TEXTS = ["Live action can bring a story to new viewers.", "真人版能讓更多觀眾認識原作。"] * 40

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")


def quick_recipe() -> dict:
    """The tiny model's recipe with ten pretraining steps: the build's code path, in seconds."""
    recipe = copy.deepcopy(RECIPE)
    recipe["pretrain"]["steps"] = 10
    return recipe


def notes() -> tuple[list[str], callable]:
    """A list that collects the one-line messages, and the echo that fills it."""
    lines: list[str] = []
    return lines, lines.append


def fake_checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint-N folder with the files transformers 5's Trainer writes, small."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(4, 4)}, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text("{}")
    torch.save({"state": {}, "param_groups": []}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"cpu": torch.random.get_rng_state()}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def cut(path: Path, keep: int) -> None:
    """Truncate a file to its first `keep` bytes, as a write that died would."""
    path.write_bytes(path.read_bytes()[:keep])


def test_manifest_lists_sizes_and_catches_a_missing_or_cut_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.json").write_text('{"x": 1}')
    (tmp_path / "sub" / "b.bin").write_bytes(b"0123456789")
    assert folders.incomplete_reason(tmp_path).startswith("it has no COMPLETE manifest")
    folders.mark_complete(tmp_path)
    assert folders.is_complete(tmp_path)
    assert json.loads((tmp_path / "COMPLETE").read_text())["files"] == {"a.json": 8, "sub/b.bin": 10}
    cut(tmp_path / "sub" / "b.bin", 4)
    assert folders.incomplete_reason(tmp_path) == "sub/b.bin has 4 of its 10 bytes"
    (tmp_path / "a.json").unlink()
    assert folders.incomplete_reason(tmp_path) == "a.json is missing"


def test_an_older_marker_without_a_file_list_is_trusted(tmp_path):
    (tmp_path / "COMPLETE").write_text("complete\n")
    assert folders.is_complete(tmp_path)


def test_a_half_written_cache_folder_is_set_aside_not_deleted(tmp_path):
    cache = tmp_path / "sft-tiny-abc"
    cache.mkdir()
    (cache / "adapter_model.safetensors").write_bytes(b"x" * 100)
    lines, echo = notes()
    assert not folders.keep_if_complete(cache, echo)
    assert not cache.exists() and (tmp_path / "sft-tiny-abc.incomplete" / "adapter_model.safetensors").exists()
    assert len(lines) == 1 and "set aside" in lines[0] and "no COMPLETE manifest" in lines[0]
    assert not folders.keep_if_complete(cache, echo) and len(lines) == 1  # nothing there: nothing to say


def test_staged_dir_swaps_in_only_a_finished_folder(tmp_path):
    target = tmp_path / "model"
    with folders.staged_dir(target) as staging:
        (staging / "weights").write_text("v1")
    assert folders.is_complete(target) and (target / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError), folders.staged_dir(target) as staging:
        (staging / "weights").write_text("half of v2")
        raise RuntimeError("the writer failed")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "a failed write leaves nothing behind"


def test_a_cache_build_killed_mid_write_leaves_no_folder_to_load_and_is_rebuilt(tmp_path):
    """The tiny model's real build, killed (DPO_KILL_AT=tiny-cache) with its weights written but not its tokenizer."""
    target = tmp_path / "tiny-test"
    script = ("import sys; sys.path.insert(0, 'tests'); from test_folders import TEXTS, quick_recipe; "
              "from helpers.tiny_model import build_tiny_model; "
              f"build_tiny_model({str(target)!r}, TEXTS, quick_recipe())")
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(ENV, DPO_KILL_AT="tiny-cache"),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1000:]
    assert not target.exists(), "a killed build must never leave a folder under the cache name"
    staging, = [p for p in tmp_path.iterdir() if p.name.startswith("tiny-test.staging-")]
    assert (staging / "model.safetensors").exists() and not (staging / "COMPLETE").exists()

    from helpers.tiny_model import build_tiny_model, load_tiny

    build_tiny_model(target, TEXTS, quick_recipe())
    assert folders.is_complete(target) and not staging.exists()
    load_tiny(target)


def test_tiny_model_path_rebuilds_a_damaged_cache_instead_of_loading_it(tmp_path, tiny_path, monkeypatch, capsys):
    from helpers import tiny_model as tm

    damaged = tmp_path / tiny_path.name
    shutil.copytree(tiny_path, damaged)
    cut(damaged / "model.safetensors", 1000)
    built = []
    monkeypatch.setattr(tm, "build_tiny_model", lambda path, *a, **k: built.append(shutil.copytree(tiny_path, path)))
    assert tm.tiny_model_path(tmp_path) == damaged
    assert built == [damaged] and folders.is_complete(damaged)
    assert "model.safetensors has 1000 of its" in capsys.readouterr().out
    assert (tmp_path / f"{tiny_path.name}.incomplete" / "model.safetensors").stat().st_size == 1000


def test_a_complete_checkpoint_passes_and_each_kind_of_damage_is_named(tmp_path):
    from helpers.training import checkpoint_problem

    path = fake_checkpoint(tmp_path, 5)
    assert checkpoint_problem(path) is None
    damages = {
        "trainer_state.json, which the Trainer writes last": lambda: (path / "trainer_state.json").unlink(),
        "trainer_state.json does not parse": lambda: cut(path / "trainer_state.json", 10),
        "is for step 4": lambda: (path / "trainer_state.json").write_text('{"global_step": 4}'),
        "optimizer.pt is a cut-off torch file": lambda: cut(path / "optimizer.pt", 200),
        "no rng_state.pth": lambda: (path / "rng_state.pth").unlink(),
        "adapter_model.safetensors has": lambda: cut(path / "adapter_model.safetensors", 80),
    }
    for words, damage in damages.items():
        shutil.rmtree(path)
        path = fake_checkpoint(tmp_path, 5)
        damage()
        assert words in (checkpoint_problem(path) or "no problem found"), words


def test_resume_takes_the_newest_complete_checkpoint_and_sets_the_newer_one_aside(tmp_path):
    from helpers.training import last_checkpoint

    out = tmp_path / "dpo"
    fake_checkpoint(out, 5)
    (fake_checkpoint(out, 10) / "trainer_state.json").unlink()  # killed while the Trainer was writing it
    lines, echo = notes()
    assert last_checkpoint(out, echo) == str(out / "checkpoint-5")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-5"]
    assert (tmp_path / "dpo.incomplete" / "checkpoint-10" / "optimizer.pt").exists()
    assert len(lines) == 1 and "checkpoint-10" in lines[0] and "trainer_state.json" in lines[0]
    (out / "checkpoint-15").mkdir()  # killed the moment the Trainer created it: nothing to keep
    assert last_checkpoint(out, echo) == str(out / "checkpoint-5") and not (out / "checkpoint-15").exists()
    assert "removed the empty" in lines[-1]
    (out / "checkpoint-5" / "rng_state.pth").unlink()
    assert last_checkpoint(out, echo) is None and "training starts from step 0" in lines[-1]
    assert last_checkpoint(tmp_path / "nothing-here", echo) is None


HOLD = "from helpers.folders import hold_lock; import sys, time\nwith hold_lock({!r}):\n    print('held', flush=True); time.sleep(120)"


def test_a_folder_held_by_a_live_process_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(str(folder))], cwd=ROOT, env=ENV, text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"in use by process {holder.pid} on {socket.gethostname()}"):
            folders.check_not_held(folder)
        with pytest.raises(UserError, match="in use by process"), folders.hold_lock(folder):
            pass
        from helpers.pipeline import save_run

        with pytest.raises(UserError, match="in use by process"):  # a notebook saving into it
            save_run(folder, None, None, {}, {}, 0.0)
        for command in (["run", "--support-ratio", "1"], ["sweep"]):
            done = subprocess.run([sys.executable, "-m", "helpers", *command, "--out", str(folder)], cwd=ROOT,
                                  env=ENV, capture_output=True, text=True, timeout=120)
            assert done.returncode == 2 and done.stderr.count("\n") == 1 and "in use by process" in done.stderr
        assert not folder.exists(), "the refused writers wrote nothing"
    finally:
        holder.kill()
        holder.wait()
    lines, echo = notes()
    with folders.hold_lock(folder, echo=echo):
        with folders.hold_lock(folder, echo=echo):  # re-entrant in one process
            assert json.loads(folders.lock_path(folder).read_text())["pid"] == os.getpid()
    assert lines == [f"took over the lock of {folder}: process {holder.pid} is gone"]
    assert not folders.lock_path(folder).exists(), "a released lock leaves no file"


def test_a_lock_from_another_host_blocks_only_while_it_shows_signs_of_life(tmp_path):
    folder = tmp_path / "run"
    lock = folders.lock_path(folder)
    lock.write_text(json.dumps({"pid": 1, "host": "some-other-machine", "since": "earlier", "token": "x"}))
    with pytest.raises(UserError, match="some-other-machine"):
        folders.check_not_held(folder)
    quiet = time.time() - folders.LOCK_STALE_AFTER - 60
    os.utime(lock, (quiet, quiet))
    lines, echo = notes()
    with folders.hold_lock(folder, echo=echo):
        pass
    assert "gave no sign of life for 3 min" in lines[0]


def test_resume_with_other_settings_names_the_knobs(tmp_path):
    from dataclasses import asdict

    from helpers.files import write_json_atomic
    from helpers.runs import RunConfig

    write_json_atomic(tmp_path / "config.json", asdict(RunConfig(support_ratio=1.0, num_epoch=2)))
    done = subprocess.run([sys.executable, "-m", "helpers", "run", "--support-ratio", "0.5", "--num-epoch", "2",
                           "--seed", "3", "--out", str(tmp_path), "--resume"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--support-ratio saved 1.0, asked 0.5; --seed saved 0, asked 3)" in done.stderr
    assert "--num-epoch" not in done.stderr
