"""Pydantic models of every payload on the wire."""
