# syntax=docker/dockerfile:1
# The Bento service image (modelyard/serving): `docker build -f docker/service.Dockerfile -t modelyard/serving:0.1.0 .`
# from the repository root. Runs as UID 1000 on a read-only root filesystem: BentoML's scratch goes to BENTOML_HOME
# and /tmp, which the ModelDeployment's pods mount as emptyDirs, and the model store's models/ comes from a volume.
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
    BENTOML_HOME=/home/bentoml \
    BENTOML_DO_NOT_TRACK=true \
    NO_ALBUMENTATIONS_UPDATE=1
COPY --from=wheel /wheels /wheels
# Only the service's extra: torch, torchvision, albumentations, BentoML; no kopf, no training tools.
RUN pip install --no-cache-dir "$(ls /wheels/modelyard-*.whl)[serving]" \
    && rm -rf /wheels \
    && groupadd --gid 1000 modelyard \
    && useradd --uid 1000 --gid 1000 --home-dir /home/bentoml --create-home --shell /usr/sbin/nologin modelyard
USER 1000:1000
WORKDIR /home/bentoml
EXPOSE 3000
# MODELYARD_MODEL_TAG (and the batching and device variables) come from the pod; see docs/contracts.md.
CMD ["modelyard", "serve", "--host", "0.0.0.0", "--port", "3000"]
