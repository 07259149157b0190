"""Click's exception classes as the installed typer raises them: typer 0.2x vendors click as
``typer._click``, older typer uses click itself."""

from __future__ import annotations

try:
    from typer._click import exceptions
except ImportError:  # typer that depends on click
    from click import exceptions  # type: ignore[no-redef]

UsageError = exceptions.UsageError
NoArgsIsHelpError = getattr(exceptions, "NoArgsIsHelpError", None)
ClickException = exceptions.ClickException

__all__ = ["ClickException", "NoArgsIsHelpError", "UsageError", "exceptions"]
