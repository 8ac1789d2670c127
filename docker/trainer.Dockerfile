# syntax=docker/dockerfile:1
# The trainer image (modelyard/trainer): `docker build -f docker/trainer.Dockerfile -t modelyard/trainer:0.1.0 .`
# from the repository root. The operator's training pods run `modelyard train --config /etc/modelyard/spec.yaml` as
# UID 1000 on a read-only root filesystem, with /tmp, /dev/shm, checkpoints and the model store on volumes.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelyard ./modelyard
COPY operator ./operator
COPY training ./training
COPY bento ./bento
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    BENTOML_DO_NOT_TRACK=true \
    NO_ALBUMENTATIONS_UPDATE=1 \
    TORCH_HOME=/opt/torch
COPY --from=wheel /wheels /wheels
# The trainer's extra: torch, torchvision, albumentations, BentoML (to save the model), the Kubernetes client.
# Pretrained backbone weights are never downloaded: bake them into $TORCH_HOME/hub/checkpoints or set model.weights.
RUN pip install --no-cache-dir "$(ls /wheels/modelyard-*.whl)[training]" \
    && rm -rf /wheels \
    && mkdir -p /opt/torch/hub/checkpoints \
    && groupadd --gid 1000 modelyard \
    && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin modelyard
USER 1000:1000
WORKDIR /tmp
CMD ["modelyard", "train", "--help"]
