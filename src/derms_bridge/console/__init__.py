"""The operations web console: server-rendered pages behind an operator's login."""
