"""The tool's version, one place for `--version`, result metadata and the report footer."""

__version__ = "0.1.0"
