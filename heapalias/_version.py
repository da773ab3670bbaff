"""The package version, written only here.

pyproject.toml reads it at build time (``[tool.setuptools.dynamic]``) without importing
heapalias, so this module imports nothing and holds one literal.
"""

__version__ = "0.1.0"
