"""Expected failures of the simulator.

Every error a user can cause (a bad config, a corrupt golden file, a layer the engine cannot run) is raised as a
:class:`ConvsimError` whose message is one line naming the field or file and the offending value. The CLI turns
these into that line on stderr and exit code 2; anything else escaping is a bug.
"""

from __future__ import annotations


class ConvsimError(Exception):
    """A user-facing error: one line, names what is wrong and what was expected."""


class ConfigError(ConvsimError):
    """The config (or a file it names) is invalid."""


class IntegrityError(ConvsimError):
    """A golden case or dump on disk does not match its recorded checksum, shape or dtype."""


class AccumulatorOverflowError(ConvsimError):
    """An int32 accumulation left range under the `error` overflow policy; ``coord`` is the output named."""

    def __init__(self, message: str, coord: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.coord = coord
