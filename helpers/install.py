"""Installing the project where a notebook runs on Colab or Kaggle: keep the platform's torch, and make the fresh
install importable in the running kernel (no restart). The notebooks' first code cell clones the repository and runs
this file with `%run dpo-notebooks/helpers/install.py dpo-notebooks`; it uses only the standard library, because the
project is not installed yet when it runs.

The repository's address lives here and only here: `python -m helpers notebooks --write` puts it into every
notebook's badges and install cell, and `--check` (a test) fails when one is out of date. The environment variable
DPO_NOTEBOOKS_REPO_URL overrides the clone address (a fork, a mirror, or a local file:// clone).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import site
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_URL = "https://github.com/dpo-notebooks/dpo-notebooks"  # the one place it is written
URL_VARIABLE = "DPO_NOTEBOOKS_REPO_URL"
CLONE_DIR = "dpo-notebooks"


def clone_url() -> str:
    """Where the install cell clones from: DPO_NOTEBOOKS_REPO_URL if set, else this repository."""
    return os.environ.get(URL_VARIABLE) or REPO_URL + ".git"


def installed_version(package: str) -> str | None:
    """The installed version of a package, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def imported_versions() -> dict[str, str]:
    """The version of every package this process has already imported, by distribution name (what pip upgrades)."""
    names = importlib.metadata.packages_distributions()
    seen = {}
    for module_name in list(sys.modules):
        if "." in module_name or module_name not in names:
            continue
        for distribution in names[module_name]:
            version = installed_version(distribution)
            if version:
                seen[distribution] = version
    return seen


def stale_imports(before: dict[str, str]) -> list[str]:
    """"pandas 2.2.2 → 3.1.1" for each package imported before the install whose installed version has changed: the
    running kernel still holds the old modules, and importing the rest of the package now would mix the two."""
    return [f"{name} {old} → {new}" for name, old in sorted(before.items())
            if (new := installed_version(name)) is not None and new != old]


def install_project(folder: str | Path = CLONE_DIR, quiet: bool = True) -> None:
    """pip install -e folder, pinned to the torch already installed (so pip never replaces it), then make the new
    editable install importable in this process by processing the site-packages .pth files again. When the install
    upgraded a package this kernel had already imported (Colab imports pandas and matplotlib at start), it stops with
    one line asking for a restart: the install itself is kept, and the next run of the cell finds it."""
    before = imported_versions()
    command = [sys.executable, "-m", "pip", "install", "-e", str(folder)] + (["--quiet"] if quiet else [])
    torch = installed_version("torch")
    with tempfile.TemporaryDirectory() as scratch:
        if torch:
            constraints = Path(scratch) / "keep-torch.txt"
            constraints.write_text(f"torch=={torch}\n", encoding="utf-8")
            command += ["--constraint", str(constraints)]
        subprocess.run(command, check=True)
    stale = stale_imports(before)
    if stale:
        raise SystemExit(f"Installed. Restart needed: this kernel had already imported {', '.join(stale)}; "
                         "Runtime → Restart session (Kaggle: Run → Restart & clear cell outputs), then run the notebook "
                         "from the top (the install is kept)")
    for directory in [*site.getsitepackages(), site.getusersitepackages()]:
        if os.path.isdir(directory):
            site.addsitedir(directory)  # runs the new __editable__ .pth file: `import helpers` now works
    importlib.invalidate_caches()


if __name__ == "__main__":
    install_project(sys.argv[1] if len(sys.argv) > 1 else CLONE_DIR)
