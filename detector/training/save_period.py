"""`train.save_period`: how often last.pt is written inside an epoch.

    period = parse_save_period("30 min")      # SavePeriod(minutes=30.0)
    period = parse_save_period("500 steps")   # SavePeriod(steps=500)
    period.due(steps_since_save=500, seconds_since_save=12.0)   # True

The value is a string with its unit, so nobody has to guess whether `30` means
minutes or steps: a number then `min` (also `minute(s)`) for wall clock, or
`step(s)` for optimizer steps. null (the default) saves at epoch ends only. A
mid-epoch last.pt lets `--resume` continue from that very step (see
docs/reliability.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from detector.config import ConfigError

_FORM = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(min|minutes?|steps?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SavePeriod:
    """Save every `minutes` of wall clock, or every `steps` optimizer steps (exactly one is set)."""

    minutes: float | None = None
    steps: int | None = None

    def due(self, *, steps_since_save: int, seconds_since_save: float) -> bool:
        """True when a mid-epoch save is due (counted from the last save of last.pt)."""
        if self.steps is not None:
            return steps_since_save >= self.steps
        return seconds_since_save >= self.minutes * 60.0

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.minutes:g} min"


def parse_save_period(value: str | float | None) -> SavePeriod | None:
    """Read `train.save_period`; None for null.

    Raises:
        ConfigError: not of the form "30 min" / "500 steps", or not positive; a bare
            number (other toolkits' "every N epochs") is refused naming both forms.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        # `save_period: 1` means "every epoch" elsewhere; here last.pt is written at every
        # epoch end anyway, and a unitless number would leave minutes vs steps to a guess.
        steps = f" or \"{value} steps\"" if isinstance(value, int) and not isinstance(value, bool) else ""
        raise ConfigError(f"train.save_period: {value!r} has no unit; last.pt is written at every epoch "
                          f"end anyway (null, the default); to save inside epochs too write e.g. "
                          f"\"{value:g} min\"{steps} (the forms: \"30 min\", \"500 steps\")")
    match = _FORM.match(value)
    if match is None:
        raise ConfigError(f"train.save_period: {value!r} is not a period; write e.g. \"30 min\" or \"500 steps\"")
    number, unit = float(match.group(1)), match.group(2).lower()
    if number <= 0:
        raise ConfigError(f"train.save_period: {value!r} must be positive")
    if unit.startswith("step"):
        if number != int(number):
            raise ConfigError(f"train.save_period: {value!r}: steps are a whole number")
        return SavePeriod(steps=int(number))
    return SavePeriod(minutes=number)
