"""Measurements: one harness (protocol, row type, report) and its sources of rows, and the scoring memory benchmark."""
