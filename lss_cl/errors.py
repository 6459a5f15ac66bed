"""Errors a user can fix: the CLI prints them on one line and exits with code 2."""


class LssError(Exception):
    """Base class for problems caused by input (config, data, files), not by bugs."""


class ConfigError(LssError):
    """A config field has a bad value; the message names the field, the value and the fix."""


class DataError(LssError):
    """A dataset is missing, corrupt or inconsistent; the message says where we looked."""
