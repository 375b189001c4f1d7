"""History and rescans into the same timeline: archives, sitemaps, search slices, snapshots."""
