"""scorefirst: compliance auditing for Parameter Golf submissions (command line in `harness.cli`)."""

__version__ = "0.1.0"
