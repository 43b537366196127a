"""Machine figures from services outside the package: BoaviztAPI (an optional, separate server).

BoaviztAPI is AGPL-3.0 and runs as its own process or Deployment; this package only speaks
HTTP to it (through :class:`carbonaware.providers.http.HttpJsonClient`) and never imports it.
The answers become :class:`carbonaware.sci.instances.InstanceFigures`; the built-in tables
stay the fallback for anything it does not know.
"""
