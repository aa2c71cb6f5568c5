"""Sphinx configuration: user guide (Markdown, via MyST) and API reference (autodoc + napoleon).

Build: ``python -m sphinx -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).

Sphinx rather than MkDocs because temsim's numpydoc-style docstrings use Sphinx roles
(``:func:``, ``:class:``, ``:meth:``) that autodoc resolves into links; napoleon (part of
Sphinx) reads the numpydoc sections without extra dependencies, and MyST keeps the guide
pages in plain Markdown that also reads well on GitHub.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # an uninstalled checkout builds too

import temsim  # noqa: E402

project = "temsim"
author = "temsim developers"
copyright = "temsim developers, BSD-3-Clause"
version = release = temsim.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: `$...$` is not used in the guide pages; heading anchors for in-page links.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members defined in each module (re-exports are documented where they are defined).
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "ignore-module-all": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_mock_imports = ["cupy", "cupyx"]  # optional GPU backend
autoclass_content = "both"  # class docstring + __init__ docstring

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# "Attributes" sections as :ivar: fields: dataclass fields are also autodoc members, and two
# attribute directives for one name are "duplicate object description" warnings.
napoleon_use_ivar = True
napoleon_preprocess_types = False

html_theme = "furo"
html_title = f"temsim {release}"
html_static_path: list[str] = []

# Docstrings write magnitudes as plain-text |k|, |g|, |U_g|, which reStructuredText reads as
# substitution references. Define each as itself, so they render as written.
_MAGNITUDES = ["k", "g", "l", "U_g", "g − h", "s_g", "ΔI", "α_x", "α_y", "r¹ − r⁰"]
rst_prolog = "\n".join(rf".. |{m}| replace:: \|{m}\|" for m in _MAGNITUDES) + "\n"
