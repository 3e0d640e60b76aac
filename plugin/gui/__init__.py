"""Dock, results view and settings dialog."""
