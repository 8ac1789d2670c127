"""Modelyard: train an image classifier, package it with BentoML, serve and roll it out on Kubernetes."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# operator/ has no __init__.py, so that `import operator` from the repository root stays the stdlib's. A wheel puts it
# inside this package; in a source checkout (editable install) it sits beside it, where setuptools' editable finder
# cannot map a folder without __init__.py. Searching the checkout's root too makes modelyard.operator a namespace
# package there, as it is in a wheel (training/ and bento/ resolve to the same files either way).
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "operator").is_dir():
    __path__.append(str(_checkout))
