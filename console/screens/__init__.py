"""Modal screens: confirmation, load dialog, details and help."""
