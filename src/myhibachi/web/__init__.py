"""The server-rendered dashboard at /."""
