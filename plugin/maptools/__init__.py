"""Map tools, one per file."""
