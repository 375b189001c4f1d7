"""Identity of what was read: canonical URLs, text folding and hashes, MinHash fingerprints, page diffs."""
