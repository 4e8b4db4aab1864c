"""The package's version: the one place it is written (pyproject.toml reads it from here).

A plain constant, so that ``ssemble --version`` costs no package-metadata lookup.
"""

__version__ = "0.1.0"
