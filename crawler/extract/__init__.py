"""Page bytes -> article text and metadata (an Article), and the text of a watched region."""
