"""Reminders domain: users' reminders (AI tasks) and their daily summary.

Firing runs on the ``reminders`` queue, the daily summaries on ``email``.

Entry points for the application are in :mod:`bgworkers.reminders.api`; the firing and the
summary run as actors (:mod:`bgworkers.reminders.actors`) around plain functions.
"""
