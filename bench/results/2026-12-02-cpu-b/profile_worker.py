"""A py-spy profile of one service worker under load (bench/RESULTS.md, 2026-12-02, later).

Starts the real service with one worker on the CPU (resnet18 + attention at 32 px, so the request path shows), sends
requests of IMAGES 256x256 JPEGs from CLIENTS keep-alive connections for 25 s and records the worker for 15 s:

    python bench/results/2026-12-02-cpu-b/profile_worker.py IMAGES OUTPUT CLIENTS
    python bench/results/2026-12-02-cpu-b/collapse.py OUTPUT 60     # the shares by function
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/, for serving.py
import serving

from modelyard.api.training_job import InputPipeline
from modelyard.bento.process import ServiceProcess, descendants


def main(images: int, output: str, clients: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "bentoml"
        tag = serving.save_model(home, "resnet18", 32, InputPipeline.CPU)
        body = serving.multipart_body(serving.sample_images(images, 256, "jpeg"), "image/jpeg")
        headers = {"Content-Type": f"multipart/form-data; boundary={serving.BOUNDARY}"}
        env = {
            "BENTOML_HOME": str(home),
            "MODELYARD_MODEL_TAG": tag,
            "MODELYARD_DEVICE": "cpu",
            "MODELYARD_WORKERS": "1",
        }
        with ServiceProcess(env, log=Path(scratch) / "service.log") as service:
            service.wait_ready(300)
            stop = time.monotonic() + 25
            answered = [0]

            def client() -> None:
                connection = http.client.HTTPConnection("127.0.0.1", service.port)
                while time.monotonic() < stop:
                    connection.request("POST", "/predict", body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        raise SystemExit(f"the service answered {response.status}")
                    answered[0] += 1

            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
            time.sleep(5)
            worker = min(descendants(service.pid or 0))
            command = ["py-spy", "record", "--pid", str(worker), "--duration", "15", "--format", "raw", "-o", output]
            subprocess.run([*command, "--nonblocking"], check=True, capture_output=True)
            for thread in threads:
                thread.join()
            print("requests answered:", answered[0])


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
