# dropflow's daemons in a container: `docker run IMAGE nm|dim|mm [OPTIONS]` (the entrypoint is `dropflow`).
#
# The base image is a build argument so that sites (and CI, which reaches no registry) can build FROM any
# image with Python >= 3.11 and venv, e.g. a locally imported Debian:
#   docker build --build-arg BASE=dropflow-ci/python-base:local -t dropflow .
# PIP_OPTIONS are passed to the pip install, e.g. "--no-index --find-links=/src/wheelhouse" to install
# offline from wheels put into the build context.
#
# Managers bind loopback unless told otherwise, and refuse to serve beyond it without a shared secret:
#   docker run --network host -e DROPFLOW_TOKEN=... IMAGE nm --host 0.0.0.0 --port 8000
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG PIP_OPTIONS=
ENV PATH=/opt/dropflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DROPFLOW_WORKSPACE=/work/dropflow-workspace
COPY . /src
RUN python3 -m venv /opt/dropflow \
    && /opt/dropflow/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_OPTIONS} /src \
    && rm -rf /src \
    && useradd --create-home --uid 1000 --user-group dropflow \
    && mkdir -p /work && chown dropflow:dropflow /work
# Not root: a daemon's apps run as this user (override with --user to match a host user's files).
USER dropflow
WORKDIR /work
EXPOSE 8000 8001 8002
ENTRYPOINT ["dropflow"]
CMD ["nm"]
