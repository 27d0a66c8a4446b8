"""Clients of the APIs that engines drive (one module per API)."""
