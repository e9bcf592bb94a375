"""Strawberry types of the engagement graph, one module per concept."""
