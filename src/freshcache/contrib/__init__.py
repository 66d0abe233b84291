"""Optional integrations; each imports its third-party library only when imported itself."""
