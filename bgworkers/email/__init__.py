"""Email domain: the outbox and its delivery over SMTP (queue ``email``).

The application calls :func:`bgworkers.email.api.enqueue_email`; the row is written in the
caller's transaction and a ``send_email`` message follows once it commits.
"""
