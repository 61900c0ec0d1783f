"""The staff dashboard served by the collector: login, live overview, sites, incidents, reports.

Pages are rendered on the server with jinja2 (autoescaped); a little plain JavaScript from
`static/` keeps the overview live over server-sent events and ticks the SLA countdowns. Nothing
is fetched from any other host and nothing needs a build step.

Modules: `sessions` (logins kept in memory, CSRF), `limits` (the login rate limit), `render`
(templates and security headers), `auth` (login, logout, the page guard), `snapshot` and
`events` (the live overview), `pages`, `charts`, `reports`, and `routes`, which wires them into
the collector's application. The site JSON they show comes from `collector.views` and their
app state from `collector.appkeys`: nothing here imports `collector.api`, which imports this.
"""
