"""Errors a user can fix, defined at the lowest layer so that ``models/`` can raise them without
importing ``tools/`` (``tools.config`` re-exports :class:`ConfigError` for everything above)."""


class ConfigError(ValueError):
    """A configuration problem the user can fix; CLIs print it and exit with status 2."""
