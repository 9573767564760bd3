"""Exceptions a user can act on. The CLI catches them once and turns them into exit codes."""


class ArchiverError(Exception):
    """Base class: the message is shown to the user as it is."""


class UsageError(ArchiverError):
    """Bad command-line input: exit code 2."""


class TargetError(UsageError):
    """A grab target (URL or id) a site module cannot accept; the message says what a valid one looks like."""
