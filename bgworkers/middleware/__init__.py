"""bgworkers' middleware, one module each; :mod:`bgworkers.broker` puts them in order."""
