"""`python -m tests.support.emulator --kubeconfig /tmp/kc.yaml [--port 8001] [--crds manifests/crds]`: serve until
interrupted, for trying kubectl or an operator by hand."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import yaml
from kubernetes import client

from tests.support.emulator.running import api_client, serve_in_thread


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.emulator")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--crds", type=Path, action="append", default=[], help="CRD files or folders to install")
    arguments = parser.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with serve_in_thread(arguments.kubeconfig, arguments.port) as running:
        extensions = client.ApiextensionsV1Api(api_client(running.kubeconfig))
        for path in arguments.crds:
            for file in sorted(path.glob("*.yaml")) if path.is_dir() else [path]:
                for document in yaml.safe_load_all(file.read_text()):
                    extensions.create_custom_resource_definition(document)
        print(f"serving {running.url}; kubeconfig {running.kubeconfig}", flush=True)
        done.wait()


if __name__ == "__main__":
    main()
