"""The guarded HTTP client: SSRF guard, politeness, robots.txt, bounded decoding, conditional GET."""
