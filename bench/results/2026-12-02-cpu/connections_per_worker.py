"""How keep-alive connections spread over the service's workers (bench/RESULTS.md, 2026-12-02).

Starts the real service with WORKERS workers (a small CPU model), opens CONNECTIONS keep-alive connections that each
send one prediction, and counts the established connections each worker process holds (`ss`).

    python bench/results/2026-12-02-cpu/connections_per_worker.py WORKERS CONNECTIONS
"""

from __future__ import annotations

import collections
import http.client
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/, for serving.py
import serving

from modelyard.api.training_job import InputPipeline
from modelyard.bento.process import ServiceProcess


def main(workers: int, connections: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "bentoml"
        tag = serving.save_model(home, "resnet18", 32, InputPipeline.CPU)
        body = serving.multipart_body(serving.sample_images(1, 64, "jpeg"), "image/jpeg")
        headers = {"Content-Type": f"multipart/form-data; boundary={serving.BOUNDARY}"}
        env = {
            "BENTOML_HOME": str(home),
            "MODELYARD_MODEL_TAG": tag,
            "MODELYARD_DEVICE": "cpu",
            "MODELYARD_WORKERS": str(workers),
        }
        with ServiceProcess(env) as service:
            service.wait_ready(300)
            serving.wait_all_workers_ready(service.url, workers)
            opened = []
            for _ in range(connections):
                connection = http.client.HTTPConnection("127.0.0.1", service.port)
                connection.request("POST", "/predict", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"the service answered {response.status}")
                opened.append(connection)
            command = ["ss", "-tnpH", "state", "established", f"( sport = :{service.port} )"]
            table = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            per_worker = collections.Counter(re.findall(r"pid=(\d+)", table))
            print(sorted(per_worker.values(), reverse=True), "connections per worker")
            for connection in opened:
                connection.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
