"""Modelyard's Grafana dashboards, built with grafana-foundation-sdk; `python -m dashboards` writes them as JSON."""
