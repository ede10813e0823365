"""Files domain: temporary-file cleanup and per-user backups (queue ``files``)."""
