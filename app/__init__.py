"""User-management reference service."""
