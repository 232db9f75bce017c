"""The course's homework, exactly: NTU GenAI 2024 HW6 and NTU ML2025 Spring HW7 as presets.

A preset binds everything the course's notebook fixes: the model and how it is loaded and trained, the system
prompt, greedy generation's length, the data files, the split rule int(data_size * support_ratio), the seed, and
the result file the student submits (its name, keys, order, indent and encoding, written as the course writes it).
Neither course runs an SFT stage, so a preset never does.

`--profile tiny` (or any other profile) swaps only the model and its training recipe: the data, split, system
prompt, file name and keys stay the course's, so the whole submission path runs on a CPU. metrics.json then records
the model that really answered, and the notebook and the command line say loudly that the file is not for submission.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from helpers import data
from helpers.config import DATA_DIR, HOMEWORK_SYSTEM_PROMPT, Profile, ProfileError, has_gpu, load_profile
from helpers.errors import UserError
from helpers.files import write_text_atomic
from helpers.knobs import check_student_id


@dataclass(frozen=True)
class Homework:
    """One course's homework: what its notebook fixes, and how it writes the file a student submits."""

    name: str  # "hw6", "hw7": what --homework takes
    course: str  # the course, for people
    profile: str  # the registered profile of the course's model
    course_settings: tuple[tuple[str, object], ...]  # where the course differs from that profile
    system_prompt: str
    max_new_tokens: int  # greedy generation, as the course's notebook
    seed: int  # the course's training seed (HW6: the Trainer's default 42; HW7: seed = 42)
    result_name: str  # str.format template over num_epoch, data_size, support_ratio, student_id
    result_keys: tuple[str, str]  # the original model's answer, the trained model's answer
    wrapped: bool  # True: {"num_epoch", "data_size", "support_ratio", "results": [...]}; False: the list itself
    ensure_ascii: bool  # json.dump's setting in the course's notebook (HW6 False, HW7 the default True)
    needs_student_id: bool = False
    split_rule: str = "course"  # int(data_size * support_ratio) in floating point, the course's own code
    rows: int = 50  # labelled rows in the course's file (both courses: 50; test prompts: 10)
    test_ids: tuple[int, ...] = ()  # the ids of the course's test prompts, one record each in the result file

    @property
    def data_url(self) -> str:
        return data.COURSE_DATA[self.name][0]

    @property
    def data_files(self) -> tuple[str, str]:
        """The labelled file and the test-prompt file, as the course's repository names them."""
        return data.COURSE_DATA[self.name][1:]

    def course_profile(self) -> Profile:
        """The course's own model and training settings."""
        profile = load_profile(self.profile, check_hardware=False).replace(**dict(self.course_settings))
        return profile.replace(name=self.name)

    def training_profile(self, profile_name: str | None = None, check_hardware: bool = True) -> Profile:
        """The course's profile, or another profile's model and recipe (tiny on a CPU) with the course's prompt,
        generation length and no SFT stage (a base model, which answers in turns only after SFT, keeps its own)."""
        if profile_name in (None, self.name, self.profile):
            profile = self.course_profile()
            if check_hardware and profile.needs_gpu and not has_gpu():
                raise ProfileError(f"homework {self.name}'s model {profile.model_name} needs a CUDA GPU and this "
                                   "machine has none; add --profile tiny to run the whole homework path on this CPU "
                                   "with the tiny model (its file is then not for submission)")
        else:
            profile = load_profile(profile_name, check_hardware)
        return profile.replace(system_prompt=self.system_prompt, max_new_tokens=self.max_new_tokens,
                               run_sft=profile.run_sft and profile.base_model)

    def result_file_name(self, num_epoch, data_size, support_ratio, student_id: str | None = None) -> str:
        """The course's file name, from the values as they were typed (1 → "1", 1.0 → "1.0", as Python prints them)."""
        if self.needs_student_id:
            check_student_id(student_id, self.name)
        return self.result_name.format(num_epoch=num_epoch, data_size=data_size, support_ratio=support_ratio,
                                       student_id=student_id)

    def result_payload(self, test_rows: list[dict], original: list[str], trained: list[str], num_epoch, data_size,
                       support_ratio) -> list | dict:
        """What the course's notebook dumps: one record per test prompt, keys in its order."""
        first, second = self.result_keys
        results = [{"id": row["id"], "prompt": row["prompt"], first: before, second: after}
                   for row, before, after in zip(test_rows, original, trained, strict=True)]
        if not self.wrapped:
            return results
        return {"num_epoch": num_epoch, "data_size": data_size, "support_ratio": support_ratio, "results": results}

    def result_text(self, payload: list | dict) -> str:
        """The file's exact text: json.dump(…, indent=4) with the course's ensure_ascii, no newline at the end."""
        return json.dumps(payload, indent=4, ensure_ascii=self.ensure_ascii)

    def write_result(self, folder: Path, test_rows: list[dict], original: list[str], trained: list[str], num_epoch,
                     data_size, support_ratio, student_id: str | None = None) -> Path:
        """Write the result file into folder, atomically, under the course's name; returns its path."""
        name = self.result_file_name(num_epoch, data_size, support_ratio, student_id)
        payload = self.result_payload(test_rows, original, trained, num_epoch, data_size, support_ratio)
        return write_text_atomic(Path(folder) / name, self.result_text(payload))

    @property
    def rehearsal_files(self) -> tuple[Path, Path]:
        """The bundled files of this course's shape, with the project's own text, for a rehearsal on another model."""
        labelled, tests = self.data_files
        return DATA_DIR / "rehearsal" / self.name / labelled, DATA_DIR / "rehearsal" / self.name / tests

    def find_data(self, folder: Path) -> tuple[Path, Path]:
        """The labelled and test files in a clone of the course's data (cloned into folder if missing)."""
        folder = data.clone_homework_data(Path(folder), course=self.name)
        labelled, tests = self.data_files
        return folder / labelled, folder / tests


HOMEWORKS: dict[str, Homework] = {h.name: h for h in [
    Homework(
        name="hw6",
        course="NTU GenAI 2024 HW6 (LLM values alignment)",
        profile="breeze-7b",
        # The course's LoraConfig names no target_modules: PEFT's default for Mistral models is q_proj and v_proj.
        course_settings=(("lora_target_modules", ("q_proj", "v_proj")), ("warmup_ratio", 0.1)),
        system_prompt=HOMEWORK_SYSTEM_PROMPT,
        max_new_tokens=200,
        seed=42,
        result_name="epoch-{num_epoch}_size-{data_size}_ratio-{support_ratio}.json",
        result_keys=("response_from_original_model", "response_from_trained_model"),
        wrapped=False,
        ensure_ascii=False,
        test_ids=tuple(range(1, 11)),
    ),
    Homework(
        name="hw7",
        course="NTU ML2025 Spring HW7 (RLHF)",
        profile="llama3-8b",
        course_settings=(),
        system_prompt="Your entire response must be 100 characters or less.",
        max_new_tokens=128,
        seed=42,
        result_name="{student_id}_hw7_epoch{num_epoch}_ratio{support_ratio}_size{data_size}.json",
        result_keys=("original_response", "aligned_response"),
        wrapped=True,
        ensure_ascii=True,
        needs_student_id=True,
        test_ids=tuple(range(51, 61)),
    ),
]}


def load_homework_preset(name: str) -> Homework:
    """The preset called name; unknown names list the known ones."""
    if name not in HOMEWORKS:
        raise UserError(f"unknown homework {name!r}; known: {', '.join(HOMEWORKS)}")
    return HOMEWORKS[name]


def model_warning(preset: Homework, model_name: str) -> str | None:
    """A loud line when the answers do not come from the course's model (None when they do)."""
    expected = preset.course_profile().model_name
    if model_name == expected:
        return None
    return (f"WARNING: these answers come from {model_name!r}, not the course's {expected!r}: "
            f"the {preset.name} result file shows the submission path only; do not submit it")


def model_record(profile: Profile, homework: str | None = None) -> dict:
    """What metrics.json says about the model that really produced the answers (and whether it is the course's)."""
    record = {"profile": profile.name, "model_name": profile.model_name, "load_in_4bit": profile.load_in_4bit}
    if homework:
        preset = load_homework_preset(homework)
        warning = model_warning(preset, profile.model_name)
        record.update(homework=preset.name, course_model=preset.course_profile().model_name,
                      is_course_model=warning is None, warning=warning)
    return record
