"""The mail intake's steps: fetch new mails from the service mailbox, store each exactly once,
mark the stored ones done in the mailbox (flows/mail.py joins them)."""
