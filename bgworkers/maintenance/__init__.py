"""Maintenance domain: scheduler heartbeat and housekeeping jobs (queue ``maintenance``)."""
