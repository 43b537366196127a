"""Grid-intensity sources. The only package that talks HTTP (httpx)."""
