"""Pydantic models of the HTTP surface (requests validated, responses documented)."""
