"""The package's version: a leaf module, so that any module can name it without importing
the package's `__init__` (which imports the pipeline: a cycle)."""

__version__ = "0.1.0"
