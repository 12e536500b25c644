"""Prometheus exporter for Mixpeek namespaces."""

__version__ = "0.1.0"
