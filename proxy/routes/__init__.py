"""Thin views: parse, call a service, map the result to a response."""
