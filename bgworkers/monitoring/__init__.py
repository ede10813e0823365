"""Monitoring: queue depths from RabbitMQ, readiness checks, the scheduler's endpoint."""
