"""Facts every package shares, at the bottom of the import graph: the version, the competition's constants, git
access and the train-log grammar. Nothing here imports audits/, reports/ or harness/ (docs/architecture.md)."""
