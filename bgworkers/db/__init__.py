"""The data layer.

- ``engine``: one engine per process, ``session_scope``, UTC datetimes, ``insert_if_absent``;
- ``tables``: ``every_table()``, the metadata with every table, for what reads the whole
  schema; what a table tells the per-user backup (secret columns, ...).

The schema itself belongs to :mod:`bgworkers.migrations`; the list of every table module to
:mod:`bgworkers.stack.tables`.
"""
