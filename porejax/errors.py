"""The one exception type users see: a one-line message naming the problem and the fix."""


class PorejaxError(ValueError):
    """Bad input or an impossible request. The message says what is wrong and what to do.

    The command line prints the message (no traceback) and exits with status 2.
    """
