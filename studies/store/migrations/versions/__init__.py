"""Revisions of tailtune's tables, oldest first."""
