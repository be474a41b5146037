"""Figures, pages and statistics over results."""
