"""Providers: small modules that translate between OpenAI's format and an upstream's."""
