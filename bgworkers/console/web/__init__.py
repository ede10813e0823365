"""The web console: server-rendered pages (Starlette + Jinja2, plain HTML forms, no script).

* :mod:`~.security`: credentials, login check, CSRF tokens, security headers;
* :mod:`~.app`: the pages and actions;
* :mod:`~.server`: ``bgworkers console`` (uvicorn), refusing to start without credentials.
"""
