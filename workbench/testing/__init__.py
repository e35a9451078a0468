"""Test doubles that speak the real protocol over a real socket (the fake OpenAI-compatible endpoint); used by tests and benchmarks only, never by the product."""
