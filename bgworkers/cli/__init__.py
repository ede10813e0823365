"""``bgworkers``, the admin command.

- ``admin``: the command's parser and subcommands (``main``), and its error boundary: one
  line with the fix, never a traceback.

``bgworkers.cli:main`` is the console script; ``python -m bgworkers.cli`` runs it too.
"""

from bgworkers.cli.admin import main

__all__ = ["main"]
