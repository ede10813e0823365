"""The data layer.

- ``engine``: one engine per process, ``session_scope``, UTC datetimes, ``insert_if_absent``;
- ``models``: every table, imported so ``SQLModel.metadata`` knows them all;
- ``table_info``: what a table tells the per-user backup (secret columns, ...).

The schema itself belongs to :mod:`bgworkers.migrations`.
"""
