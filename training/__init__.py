"""The trainer of the proposal's classifier (installed as `modelyard.training`).

Modules are imported one by one (`modelyard.training.transforms`, `.model`, `.export`, ...) so that the Bento service
can use the model builder and the evaluation transform without pulling in the training loop.
"""
