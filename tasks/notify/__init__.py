"""The delivery pipeline's steps, one task per file: plan an incident's messages, deliver any
process's plans, record and keep what failed, load what was kept; flows/notify.py joins them."""
