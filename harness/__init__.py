"""scorefirst: compliance auditing for Parameter Golf submissions (command line in `harness.cli`)."""

