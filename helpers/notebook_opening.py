"""Every notebook's Colab and Kaggle badges and its install cell, generated from helpers.install.REPO_URL: one
address for all of them, the READMEs' homework badges included (`python -m helpers notebooks --check|--write`;
--write also strips an executor's run metadata, so re-execute a notebook in place with papermill, then run it). The
READMEs' memory table is generated here too, from helpers.memory."""

from __future__ import annotations

from pathlib import Path

from helpers.config import PROJECT_ROOT
from helpers.install import CLONE_DIR, REPO_URL, URL_VARIABLE

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
COLAB_BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
KAGGLE_BADGE = "[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"


def badge_lines(notebook_name: str, repo_url: str = REPO_URL) -> list[str]:
    """The two badge lines of a notebook, opening its copy on the repository's main branch."""
    slug = repo_url.removeprefix("https://github.com/").removesuffix(".git")
    path = f"{slug}/blob/main/notebooks/{notebook_name}"
    return [f"{COLAB_BADGE}(https://colab.research.google.com/github/{path})",
            f"{KAGGLE_BADGE}(https://kaggle.com/kernels/welcome?src=https://github.com/{path})"]


def install_cell(repo_url: str = REPO_URL) -> str:
    """The guarded install cell: on Colab or Kaggle, clone (DPO_NOTEBOOKS_REPO_URL overrides the address) and run
    helpers/install.py in this kernel; elsewhere nothing (make has installed the project)."""
    return "\n".join([
        "import os, sys",
        'if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:',
        f'    url = os.environ.get("{URL_VARIABLE}", "{repo_url}.git")',
        f'    if not os.path.isdir("{CLONE_DIR}"):',
        f"        !git clone --quiet --depth 1 {{url}} {CLONE_DIR}",
        f"    %run {CLONE_DIR}/helpers/install.py {CLONE_DIR}  # keeps the platform's torch; no restart needed",
    ])


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and "google.colab" in cell.source


def synced(nb, name: str):
    """The notebook with its badge lines and install cell as generated (a changed copy, or the same object)."""
    import copy

    fresh = copy.deepcopy(nb)
    first = fresh.cells[0]
    badges = iter(badge_lines(name))
    lines = [next(badges) if line.startswith((COLAB_BADGE, KAGGLE_BADGE)) else line
             for line in first.source.split("\n")]
    first.source = "\n".join(lines)
    for cell in fresh.cells[:6]:
        if _is_install_cell(cell):
            cell.source = install_cell()
            break
    strip_run_metadata(fresh)
    return fresh


def strip_run_metadata(nb) -> None:
    """Drop what an executor records about one run (papermill's timings, execution stamps, kernel versions), so a
    notebook re-executed in place differs from the committed one only where its source or outputs do."""
    nb.metadata.pop("papermill", None)
    if "language_info" in nb.metadata:
        info = nb.metadata["language_info"]
        nb.metadata["language_info"] = {k: info[k] for k in ("name", "pygments_lexer") if k in info}
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if cell.cell_type == "code":  # a progress bar redrawn with carriage returns is noise once committed
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr"
                                                            and "%|" in o.text and "\r" in o.text)]


READMES = (PROJECT_ROOT / "README.md", PROJECT_ROOT / "README.zh-TW.md")
HOMEWORK_NOTEBOOK = "00_homework.ipynb"  # both READMEs open with its badges


TABLE_START, TABLE_END = "<!-- memory-table -->", "<!-- /memory-table -->"


def synced_readme(text: str, lang: str = "en") -> str:
    """A README with its badge lines (the homework notebook's, at the top) generated from the one address, and its
    memory table from helpers.memory (between the memory-table markers)."""
    from helpers.memory import memory_table

    badges = badge_lines(HOMEWORK_NOTEBOOK)
    lines = [badges[0] if line.startswith(COLAB_BADGE) else badges[1] if line.startswith(KAGGLE_BADGE) else line
             for line in text.split("\n")]
    text = "\n".join(lines)
    if TABLE_START in text:
        head, rest = text.split(TABLE_START, 1)
        text = f"{head}{TABLE_START}\n{memory_table(lang)}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}"
    return text


def sync_notebooks(folder: Path = NOTEBOOKS_DIR, write: bool = False) -> list[str]:
    """Names of the notebooks (and READMEs) whose badges or install cell differ from the generated ones (rewritten
    if write)."""
    import nbformat

    changed = []
    if Path(folder) == NOTEBOOKS_DIR:
        for readme, lang in zip(READMES, ("en", "zh-TW")):
            text = readme.read_text(encoding="utf-8")
            fresh = synced_readme(text, lang)
            if fresh != text:
                changed.append(readme.name)
                if write:
                    readme.write_text(fresh, encoding="utf-8")
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        fresh = synced(nb, path.name)
        if fresh != nb:
            changed.append(path.name)
            if write:
                nbformat.write(fresh, path)
    return changed
