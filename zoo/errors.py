"""The error every zoo class raises for a bad setting, so that the CLI can tell bad input from bugs."""


class SettingError(ValueError):
    """A constructor argument or config value out of its range, of the wrong kind, or inconsistent.

    Its message names the setting and the value, and says what would be valid.
    """
