"""The one user-error type and the one table that maps its kinds to exit codes.

A user mistake (bad config, bad file, bad argument) raises `EdgeError`; the CLI prints its
message and exits with the code below, never a traceback. The one rule: what can be judged from
the command line alone (an unknown flag, a value outside its range or set, flags that contradict
each other; a stage's options model raises these) is USAGE, exit 2; whatever needs a file read
(a config, dataset, checkpoint, bundle that is wrong, or a check on them that fails) is exit 1;
a model over its budget with --fail-on-violation is exit 3.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    INPUT = "input"  # a file, config or checkpoint that is wrong
    USAGE = "usage"  # a command line that is wrong
    BUDGET = "budget"  # a model over its deployment budget (--fail-on-violation)
    CHECK = "check"  # a numerical or integrity check that failed


EXIT_CODES: dict[ErrorKind, int] = {
    ErrorKind.INPUT: 1,
    ErrorKind.CHECK: 1,
    ErrorKind.USAGE: 2,
    ErrorKind.BUDGET: 3,
}


class EdgeError(Exception):
    """A mistake the user can fix; the message says what and where."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.INPUT):
        super().__init__(message)
        self.kind = kind

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]
