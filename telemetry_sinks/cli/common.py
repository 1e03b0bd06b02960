"""What every command shares: exit codes."""

from __future__ import annotations

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

EXIT_CODES = """exit codes:
  0  success
  1  invalid input (an invalid event or schema; an out-of-date index for archive rebuild --check;
     events not delivered by dead-letters replay)
  2  bad usage or configuration (unknown option, unreadable config file, unknown sink, missing file)"""

__all__ = ["EXIT_CODES", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE"]
