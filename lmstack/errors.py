"""One exception type for user-facing failures.

Anything raised as `LmstackError` is printed by the CLI as a single `error: ...` line with exit
code 1; anything else is a bug and keeps its traceback.
"""


class LmstackError(Exception):
    """A problem with the user's input (files, flags, data) rather than with lmstack itself."""
