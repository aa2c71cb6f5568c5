"""temsim's version: written only here (pyproject.toml reads it; see CHANGELOG.md)."""

__version__ = "0.1.0"
