"""Sphinx configuration of linsgd's documentation (``sphinx-build -W -b html docs docs/_build``)."""

from __future__ import annotations

import linsgd

project = "linsgd"
author = "the linsgd developers"
copyright = "the linsgd developers"
release = linsgd.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "numpydoc",
]

# numpydoc renders the Parameters/Returns sections; the signatures keep their names only
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options: dict[str, object] = {}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# the same validation as tests/test_docstrings.py, so that the build fails on a bad docstring
numpydoc_validation_checks = {"all", "ES01", "SA01", "EX01"}
numpydoc_validation_exclude = {
    r"\.get_params$", r"\.set_params$", r"\.score$", r"\.set_.*_request$",  # scikit-learn's
    r"\.__init__$",
    # a dataclass whose fields are documented as Attributes (numpydoc wants them as
    # Parameters too, PR01); see tests/test_docstrings.py
    r"^linsgd\.kernels\.TrainResult$",
    # a typing.Protocol: numpydoc reads its implicit __init__(*args, **kwargs) as parameters (PR01)
    r"^linsgd\.distributed\.Communicator$",
    r"^linsgd\.io\.ChunkSource$",
}

# ``sphinx-build -b doctest``: the examples of the guide and of the docstrings run
doctest_global_setup = """
import numpy as np
import linsgd
from linsgd import LinearRegressor
try:
    import torch
except ImportError:
    torch = None
"""

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
