"""Command line: ``syncd`` (daemon), ``syncd --rescan``, ``syncd verify``, ``syncd migrate``,
``syncd report``, ``syncd sources``, ``syncd minds``, ``syncd health``, ``syncd
embedded-stop``. ``main`` (main.py) parses, dispatches and maps errors to exit codes; a
module per family of commands (sync, schema, admin, status) runs them, on a database got
by database.py. The only package that prints (with console.py's bar and summary)."""

from syncd.cli.main import main

__all__ = ["main"]
