from tests.support.mail import dovecot, mail_client, mail_rt  # noqa: F401
