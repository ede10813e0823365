"""Plain helpers of these tests (functions, classes, constants); fixtures stay in conftest."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    Table,
    TypeDecorator,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bgworkers.files.ownership import (
    EXCLUDED_TABLES,
    owner_email_column,
    secret_columns,
    user_tables,
)
from bgworkers.sync.models import STATUS_REAUTH_REQUIRED


def _base_type(column: Column[Any]) -> Any:
    type_ = column.type
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return type_


def fake_value(column: Column[Any], n: int) -> Any:
    """A value of the column's type, distinct for each ``n`` (unique constraints hold)."""
    type_ = _base_type(column)
    if isinstance(type_, Enum):
        return type_.enum_class(type_.enums[0]) if type_.enum_class else type_.enums[0]
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = object
    if python_type is object:  # a decorator that does not say: its underlying type does
        python_type = type_.python_type
    if isinstance(python_type, type) and issubclass(python_type, enum.Enum):
        return next(iter(python_type))
    if python_type is str:
        length = getattr(type_, "length", None) or 64
        return f"{n}-{column.name}-é"[:length]
    if python_type is bool:
        return n % 2 == 0
    if python_type is int:
        return 1000 + n
    if python_type is float:
        return n + 0.25
    if python_type is Decimal:
        return Decimal(f"{n}.25")
    if python_type is datetime:
        moment = datetime(2026, 1, 1, 8, 30, tzinfo=UTC) + timedelta(minutes=n, microseconds=n)
        aware = getattr(type_, "timezone", False) or isinstance(column.type, TypeDecorator)
        return moment if isinstance(type_, DateTime) and aware else moment.replace(tzinfo=None)
    if python_type is date:
        return date(2026, 1, 1) + timedelta(days=n)
    if python_type is dt_time:
        return dt_time(8, n % 60)
    if python_type is bytes:
        return bytes([0, 255, n % 256])
    if python_type is timedelta:
        return timedelta(seconds=n)
    if python_type is uuid.UUID:
        return uuid.uuid4()
    if python_type is dict:
        return {"n": n, "label": "é"}
    if python_type is list:
        return [n, "x"]
    raise AssertionError(f"no fake value for {column} ({python_type}); extend fake_value")


_IN_LIST = re.compile(r"\b(\w+)\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


def allowed_values(table: Table) -> dict[str, Any]:
    """For ``CHECK (col IN ('a', 'b'))`` constraints, a value the check accepts."""
    allowed: dict[str, Any] = {}
    for constraint in table.constraints:
        if isinstance(constraint, CheckConstraint):
            for column, values in _IN_LIST.findall(str(constraint.sqltext)):
                first = values.split(",")[0].strip()
                allowed[column] = first.strip("'") if first.startswith("'") else int(first)
    return allowed


def rows_allowed_per_user(table: Table, wanted: int) -> int:
    """1 if a unique key is made only of columns fixed for one user (``user_id``, parents)."""
    fixed = {c.name for c in table.columns if c.name == "user_id" or c.foreign_keys}
    keys = [{c.name for c in index.columns} for index in table.indexes if index.unique]
    keys += [
        {c.name for c in constraint.columns}
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    keys += [{c.name} for c in table.columns if c.unique]
    keys.append({c.name for c in table.primary_key.columns})
    return 1 if any(key and key <= fixed for key in keys) else wanted


def _generated_key(table: Table, column: Column[Any]) -> bool:
    return (
        column.primary_key
        and len(table.primary_key.columns) == 1
        and _base_type(column).python_type is int
        and column.autoincrement in ("auto", True)
    )


def owned_tables() -> list[Table]:
    """Every table holding a user's rows: the archived ones and those left out on purpose."""
    archived = user_tables()
    left_out = [
        t
        for t in SQLModel.metadata.sorted_tables
        if t.name in EXCLUDED_TABLES and t not in archived
    ]
    return archived + left_out


def fill_user(conn: Connection, *, rows_per_table: int, seed: int) -> int:
    """Insert a user and ``rows_per_table`` rows in every table it owns; return its id.

    Rows are built from the columns' types, so a table another domain adds is covered with no
    change here. Foreign keys to other tables point at this user's rows of those tables; a
    table owned by email gets the user's address in another case (ownership ignores case).
    """
    counter = seed * 10_000
    user_id: int | None = None
    made: dict[str, list[dict[str, Any]]] = {}
    for table in owned_tables():
        email_column = owner_email_column(table)
        made[table.name] = []
        count = 1 if table.name == "users" else rows_allowed_per_user(table, rows_per_table)
        allowed = allowed_values(table)
        for _ in range(count):
            counter += 1
            row: dict[str, Any] = {}
            for column in table.columns:
                if _generated_key(table, column):
                    continue
                foreign = next(iter(column.foreign_keys), None)
                if column.name == "user_id":
                    row[column.name] = user_id
                elif column.name == email_column:
                    email = made["users"][0]["email"]
                    row[column.name] = "".join(c.upper() if c.isascii() else c for c in email)
                elif column.name in allowed:
                    row[column.name] = allowed[column.name]
                elif foreign is not None:
                    parents = made.get(foreign.column.table.name)
                    assert parents or column.nullable, f"no parent row for {column}"
                    row[column.name] = parents[0][foreign.column.name] if parents else None
                else:
                    row[column.name] = fake_value(column, counter)
            key = conn.execute(table.insert(), row).inserted_primary_key
            for column, value in zip(table.primary_key.columns, key or (), strict=False):
                row[column.name] = value
            if table.name == "users":
                user_id = row["id"]
            made[table.name].append(row)
    assert user_id is not None
    return user_id


def database_rows(conn: Connection, user_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row the database holds for the user, per table, in primary-key order."""
    users = SQLModel.metadata.tables["users"]
    email = conn.execute(select(users.c.email).where(users.c.id == user_id)).scalar()
    result = {}
    for table in owned_tables():
        email_column = owner_email_column(table)
        if table.name == "users":
            owned = table.c.id == user_id
        elif email_column is not None:
            owned = func.lower(table.c[email_column]) == str(email).lower()
        else:
            owned = table.c.user_id == user_id
        statement = select(table).where(owned).order_by(*table.primary_key.columns)
        result[table.name] = [dict(row) for row in conn.execute(statement).mappings()]
    return result


def delete_user(conn: Connection, user_id: int) -> None:
    """Delete the user's rows of every table with ``user_id``, then the user.

    Rows owned by email have no foreign key and stay, as they do when the application deletes
    a user.
    """
    for table in reversed(owned_tables()):
        if table.name == "users":
            conn.execute(table.delete().where(table.c.id == user_id))
        elif "user_id" in table.columns:
            conn.execute(table.delete().where(table.c.user_id == user_id))


def archived_rows(
    rows: dict[str, list[dict[str, Any]]], *, restored: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """What an archive (or a restore) holds of ``database_rows``: no sessions, no OAuth tokens."""
    expected = {}
    for table in user_tables():
        secret = secret_columns(table)
        expected[table.name] = [
            {
                name: ("" if restored else None)
                if name in secret
                else (STATUS_REAUTH_REQUIRED if restored and secret and name == "status" else value)
                for name, value in row.items()
            }
            for row in rows[table.name]
        ]
    return expected
