"""Errors that reach the user as one line and exit code 2."""


class OptbenchError(Exception):
    """A problem with the user's input: the message names the bad value and the fix."""

    exit_code = 2
