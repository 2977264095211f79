"""The one exception type that stage scripts turn into a one-line message."""

from collections.abc import Collection


class UserError(Exception):
    """Bad input or config: the message names the file or key and is shown without a traceback."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_choice(key: str, value: str, known: Collection[str]) -> None:
    """Raise a one-line error naming ``key`` when ``value`` is not one of ``known``."""
    if value not in known:
        raise UserError(f"{key}: unknown value '{value}' (known: {', '.join(known)})")
