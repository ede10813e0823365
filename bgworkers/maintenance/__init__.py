"""Maintenance domain: scheduler heartbeat and database/housekeeping jobs (queue ``maintenance``)."""
