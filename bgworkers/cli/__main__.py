"""``python -m bgworkers.cli``: the ``bgworkers`` command."""

from bgworkers.cli.admin import main

raise SystemExit(main())
