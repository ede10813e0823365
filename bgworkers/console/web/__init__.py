"""The web console: server-rendered pages (Starlette + Jinja2, plain HTML forms, no script).

* :mod:`~.security`: credentials, login check, CSRF tokens, security headers;
* :mod:`~.app`: the app: routes, sessions, security headers, error pages;
* :mod:`~.site`: what every page shares (templates, login, CSRF, notices);
* :mod:`~.routes`: the pages and actions, one module per page group;
* :mod:`~.server`: ``bgworkers console`` (uvicorn), refusing to start without credentials.
"""
