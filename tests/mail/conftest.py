import pytest

from tests.support.mail import dovecot, mail_rt  # noqa: F401 (fixtures)


@pytest.fixture
def rt(mail_rt):  # noqa: F811
    """The runtime the suite's fixtures (`client`) build on: one whose mail.yaml reads the
    test's dovecot."""
    return mail_rt
