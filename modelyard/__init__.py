"""Modelyard: train an image classifier, package it with BentoML, serve and roll it out on Kubernetes."""

__version__ = "0.1.0"
