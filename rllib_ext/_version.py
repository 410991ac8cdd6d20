"""The one place the package version lives; setup.py reads it by regex, without importing."""

__version__ = "0.4.0"
