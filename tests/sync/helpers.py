"""Plain helpers of these tests (functions, classes, constants); fixtures stay in conftest."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bgworkers.sync.models import CalendarConnection, NotionConnection
from bgworkers.users.models import User

# Tokens given to the code under test; the log tests check none of them is ever printed.
ACCESS = "access-initial"


REFRESH = "refresh-initial"


NOTION_TOKEN = "secret_notion-initial"


def add_user(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        user = User(email=email)
        session.add(user)
        session.commit()
        assert user.id is not None
        return user.id


def connect_calendar(
    engine: Engine, user_id: int, *, calendar_id: str = "primary", access: str = ACCESS
) -> None:
    with Session(engine) as session:
        session.add(
            CalendarConnection(
                user_id=user_id, calendar_id=calendar_id, access_token=access, refresh_token=REFRESH
            )
        )
        session.commit()


def connect_notion(engine: Engine, user_id: int, *, token: str = NOTION_TOKEN) -> None:
    with Session(engine) as session:
        session.add(NotionConnection(user_id=user_id, access_token=token))
        session.commit()
