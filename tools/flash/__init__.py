"""The field installer's tool: build firmware, flash and provision modules over serial (docs/installer.md)."""
