"""Make ``import gmm`` find the package, not this folder; shared fixtures of the gmm tests.

tests/gmm/ has no ``__init__.py`` and pytest's default "prepend" import mode puts ``tests/`` on
``sys.path`` (for tests/conftest.py), so a bare ``.venv/bin/pytest`` would resolve ``import gmm``
to this folder as a namespace package: a regular package on ``sys.path`` wins over a namespace
portion, but the editable install exposes ``gmm`` through an import hook consulted only after
the path scan. Putting the project root on ``sys.path`` makes the real package win. (A
project-wide fix is ``pythonpath = ["."]`` in pyproject's pytest options; ``python -m pytest``
already has the root on the path.)
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_mod = sys.modules.get("gmm")
if _mod is not None and getattr(_mod, "__file__", None) is None:
    del sys.modules["gmm"]  # a namespace package bound to this folder
