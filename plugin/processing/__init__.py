"""Processing provider and algorithms, one per file."""
