"""Users of the assistant, shared by every domain (reminders, email, sync, files)."""
