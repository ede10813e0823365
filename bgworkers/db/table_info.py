"""Keys a table may set in its ``info`` to tell the per-user backup how to treat it.

A domain that owns a table declares these next to the table; the files domain reads them when
it archives and restores a user's rows. Neither side imports the other: both depend on this
module only. Example::

    __table_args__ = ({"info": {SECRET_COLUMNS: ("access_token",),
                                RESTORED_VALUES: {"status": "reauth_required"}}},)
"""

from __future__ import annotations

from typing import Final

#: Columns holding credentials: written as null in archives, restored empty.
SECRET_COLUMNS: Final = "secret_columns"
#: For a table without ``user_id``: the column holding its owner's email address.
OWNER_EMAIL_COLUMN: Final = "backup_owner_email_column"
#: Column values a restored row gets instead of the archived ones (a connection whose
#: credentials were left out is restored as needing a new authorisation).
RESTORED_VALUES: Final = "restored_values"
