"""Development tools run from a checkout, never shipped in the ``bgworkers`` package.

* :mod:`~.grafana_dashboards`: builds ``deploy/grafana/dashboards/*.json``
  (``python -m tools.grafana_dashboards``).
"""
