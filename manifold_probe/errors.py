"""The one exception type for bad user input.

Anything the user can fix (a missing file, a wrong shape, NaN in the data, k too large for
the number of points) raises `InputError` with one sentence that names the problem and
what to do. The command line prints that sentence and exits with code 2; library callers
catch it like any ValueError.

An error about one argument carries that argument's name in `parameter` (the Python name,
e.g. `n_bootstrap`): in Python the message reads `n_bootstrap: must be ...`, and the
command line prints the flag that set it instead (`--bootstrap: must be ...`), from its own
table of which flag sets which parameter. Messages never name command-line flags.

Example
-------
>>> str(InputError("must be at least 0, got -1.", parameter="n_bootstrap"))
'n_bootstrap: must be at least 0, got -1.'
>>> InputError("must be at least 0, got -1.", parameter="n_bootstrap").message
'must be at least 0, got -1.'
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: one line for the user, saying what is wrong and what to do.

    `message` is the sentence; `parameter` the name of the argument it is about (None when
    it is about no single argument, such as a file's contents).
    """

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    def __str__(self) -> str:
        return f"{self.parameter}: {self.message}" if self.parameter else self.message

    def __reduce__(self):  # keep `parameter` through pickling (sweep workers, Ray)
        return (_rebuild, (self.message, self.parameter))


def _rebuild(message: str, parameter: str | None) -> InputError:
    return InputError(message, parameter=parameter)


def summary(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (with the next one when it ends in a
    colon; its type's name when it has none), at most `limit` characters: a library's
    multi-line error as one line for the user.

    >>> summary(ValueError("bad field 'x':\\n    TypeError: expected int\\n"))
    "bad field 'x': TypeError: expected int"
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines[:2] = [f"{lines[0]} {lines[1]}"]
    return (lines[0] if lines else type(exc).__name__)[:limit]
