"""dpo-notebooks helpers: everything the notebooks call, importable from anywhere after `pip install -e .`."""

from helpers.config import load_profile
from helpers.notebook import setup_notebook

__all__ = ["load_profile", "setup_notebook"]
__version__ = "0.1.0"
