"""A Kubernetes API emulator for tests, on top of kmock: a real HTTP server that the kubernetes client, kopf and
kubectl talk to. See tests/support/README.md for what it does and does not emulate."""

from tests.support.emulator.running import RunningEmulator, api_client, kubeconfig, serve_in_thread
from tests.support.emulator.server import Emulator

__all__ = ["Emulator", "RunningEmulator", "api_client", "kubeconfig", "serve_in_thread"]
