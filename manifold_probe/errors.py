"""The one exception type for bad user input.

Anything the user can fix (a missing file, a wrong shape, NaN in the data, k too large for
the number of points) raises `InputError` with one sentence that names the problem and
what to do. The command line prints that sentence and exits with code 2; library callers
catch it like any ValueError.
"""


class InputError(ValueError):
    """Bad input: the message is one line for the user, saying what is wrong and what to do."""
