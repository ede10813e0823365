"""Sync domain: pull Google Calendar events and Notion pages per user (queue ``sync``)."""
