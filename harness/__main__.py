"""`python -m harness` is the `scorefirst` command."""
import sys

from harness.cli import main

sys.exit(main())
