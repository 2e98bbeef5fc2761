"""Reference implementation of the Parameter Golf record stack, with legal score-first TTT and illegal controls.

Importing this package is cheap: torch is imported only by the modules that need it.
"""

__all__ = ["config", "errors", "observe"]
