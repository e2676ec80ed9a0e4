"""Choosing the provider and upstream model for a request."""
