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


def install_project(folder: str | Path = CLONE_DIR, quiet: bool = True) -> None:
    """pip install -e folder, pinned to the torch already installed (so pip never replaces it), then make the new
    editable install importable in this process by processing the site-packages .pth files again."""
    command = [sys.executable, "-m", "pip", "install", "-e", str(folder)] + (["--quiet"] if quiet else [])
    torch = installed_version("torch")
    with tempfile.TemporaryDirectory() as scratch:
        if torch:
            constraints = Path(scratch) / "keep-torch.txt"
            constraints.write_text(f"torch=={torch}\n", encoding="utf-8")
            command += ["--constraint", str(constraints)]
        subprocess.run(command, check=True)
    for directory in [*site.getsitepackages(), site.getusersitepackages()]:
        if os.path.isdir(directory):
            site.addsitedir(directory)  # runs the new __editable__ .pth file: `import helpers` now works
    importlib.invalidate_caches()


if __name__ == "__main__":
    install_project(sys.argv[1] if len(sys.argv) > 1 else CLONE_DIR)
