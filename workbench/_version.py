"""The package version, importable from any layer (the package root imports the API lazily)."""

__version__ = "0.1.0"
