"""Feed bytes -> entries: feedparser on screened bytes, JSON Feed, sitemaps."""
