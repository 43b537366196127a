"""Grid-intensity sources. The only package that talks HTTP (httpx).

- :mod:`.base`: the :class:`~.base.Provider` protocol and shared helpers.
- :mod:`.http`: :class:`~.http.HttpJsonClient`, the one HTTP helper (also used by the
  Prometheus CPU reader): retries, Retry-After, typed errors.
- :mod:`.ukci`, :mod:`.electricitymaps`, :mod:`.watttime`, :mod:`.static`, :mod:`.trace`:
  one module per source; :mod:`.tracefile` reads trace CSVs.
- :mod:`.chain`: fallback in order behind a shared single-flight TTL cache with
  stale-while-error; :mod:`.factory`: ``build_provider(settings)``.
- :mod:`.report`: the ``carbonaware forecast`` table.

Nothing is re-exported here, so importing :mod:`.tracefile` stays cheap.
"""
