"""Scenarios: ``loader`` reads a file or a preset with errors naming file, line and field; ``presets``."""
