"""One exception family, so callers can catch `FrontierError` and still read where it went wrong."""
from __future__ import annotations


class FrontierError(Exception):
    """Base of every error the toolkit raises on purpose."""


class DataFileError(FrontierError, ValueError):
    """A data file (dataset, config, journal, import) has a bad row or field."""

    def __init__(self, path: object, message: str, *, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f" line {line}" if line is not None else "")
        what = f'field "{field}": ' if field is not None else ""
        super().__init__(f"{where}: {what}{message}")


class ConfigError(DataFileError):
    """A collection config has an unknown key, a wrong type or an impossible value."""


class EndpointError(FrontierError):
    """An endpoint could not be reached, refused the key, or the embedded server failed to start."""


class PriceError(FrontierError, KeyError):
    """No price is known for a model."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RunDirError(FrontierError, FileNotFoundError):
    """A run directory is missing, unreadable or its requests table lacks a column."""


class ParameterError(FrontierError, TypeError):
    """A notebook or report parameter has the wrong type or value."""


class NotebookError(FrontierError):
    """A notebook failed while executing; the partly executed copy is kept at `output_path`."""

    def __init__(self, notebook: str, cell: int | None, error: str, output_path: str) -> None:
        self.notebook, self.cell, self.error, self.output_path = notebook, cell, error, output_path
        at = f" cell {cell}" if cell is not None else ""
        super().__init__(f"notebook {notebook}{at} failed: {error} (partial output kept in {output_path})")
