# syntax=docker/dockerfile:1
# The operator image (modelyard/operator): `docker build -f docker/operator.Dockerfile -t modelyard/operator:0.1.0 .`
# from the repository root. Small and quick to start: kopf and the Kubernetes client, no torch. The chart runs
# `modelyard operator` as a non-root user on a read-only root filesystem.
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
    HOME=/tmp
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/modelyard-*.whl)[operator]" \
    && rm -rf /wheels \
    && groupadd --gid 1000 modelyard \
    && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin modelyard
USER 1000:1000
WORKDIR /tmp
CMD ["modelyard", "operator"]
