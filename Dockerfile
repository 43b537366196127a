# syntax=docker/dockerfile:1
# carbon-aware-operator: the operator (`carbonaware run`) and the SSH runner in one image.
#
#   docker build -t carbon-aware-operator:dev .
#
# The build stage installs the dependencies into a virtual environment, then the source as a
# wheel; the runtime stage copies only that environment onto the slim base. The dependencies
# get a layer of their own, made from pyproject.toml alone, so a change to the source reuses it
# from the build cache instead of downloading every dependency again.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' > /tmp/requirements.txt \
 && python -m venv /opt/carbonaware \
 && /opt/carbonaware/bin/pip install --requirement /tmp/requirements.txt
COPY README.md LICENSE ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/carbonaware/bin/pip install --no-deps /wheels/*.whl \
 && /opt/carbonaware/bin/carbonaware --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="carbon-aware-operator" \
      org.opencontainers.image.description="Holds delay-tolerant batch work until the grid is cleaner and reports each run's SCI." \
      org.opencontainers.image.licenses="Apache-2.0"
# A named non-root user (uid/gid 65532, as in distroless "nonroot"), so tools that look the user
# up find it. The chart runs the container with this uid and a read-only root filesystem; /tmp is
# the only writable place, so HOME points there.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/carbonaware /opt/carbonaware
ENV PATH=/opt/carbonaware/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 8080: Prometheus metrics; 8081: liveness (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["carbonaware"]
CMD ["run"]
