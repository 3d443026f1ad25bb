"""Errors that are the user's to fix: the CLI prints them on one line and exits with code 2."""


class UserError(Exception):
    """Bad input (a file, a spec, an option): reported as one line, never as a traceback."""


class TreeError(UserError):
    """A metric tree that cannot be parsed, validated or evaluated."""


class BackendLost(UserError):
    """The evaluation backend can evaluate nothing any more (e.g. every Ray worker is gone): the
    search stops with this one line, its run directory intact, instead of penalising every
    candidate. The engine lets it through where it turns other errors into failed candidates."""
