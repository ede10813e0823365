import pytest
from pydantic import ValidationError

from bgworkers.errors import ConfigurationError
from bgworkers.settings import SEND_EMAIL_TIME_LIMIT_S, Settings, load_settings


@pytest.mark.parametrize("timeout_s", [1.0, 150.0])
def test_sending_timeout_must_outlast_a_send(timeout_s: float) -> None:
    """At or below send_email's limit plus the SMTP timeout, the sweep would resend."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(email_sending_timeout_s=timeout_s, smtp_timeout_s=30.0)
    message = str(caught.value)
    assert "BGW_EMAIL_SENDING_TIMEOUT_S" in message
    assert "more than 150 s" in message


def test_the_limit_follows_the_smtp_timeout() -> None:
    assert SEND_EMAIL_TIME_LIMIT_S == 120
    with pytest.raises(ValidationError, match="BGW_SMTP_TIMEOUT_S"):
        Settings(email_sending_timeout_s=200.0, smtp_timeout_s=80.0)
    settings = Settings(email_sending_timeout_s=150.5, smtp_timeout_s=30.0)
    assert settings.email_sending_timeout_s == 150.5
    assert Settings().email_sending_timeout_s == 600.0  # the default is valid
