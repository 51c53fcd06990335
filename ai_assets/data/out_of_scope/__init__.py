"""Hand-written out-of-scope messages (see README.md)."""
