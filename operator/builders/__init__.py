"""Pure builders: an API object and the operator's Settings in, the Kubernetes objects to apply out."""
