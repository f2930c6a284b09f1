"""Errors the runner reports as one line instead of a traceback."""


class ConfigError(ValueError):
    """A config value, or a combination of choices, that cannot run. The message names the key."""
