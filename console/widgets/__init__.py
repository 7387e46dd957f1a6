"""Widgets of the console: header, tables, event log and the cells they draw."""
