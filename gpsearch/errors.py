"""Errors that are the user's to fix: the CLI prints them on one line and exits with code 2."""


class UserError(Exception):
    """Bad input (a file, a spec, an option): reported as one line, never as a traceback."""


class TreeError(UserError):
    """A metric tree that cannot be parsed, validated or evaluated."""
