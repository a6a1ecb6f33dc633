# syntax=docker/dockerfile:1
# The aidp image: `aidp run` (the operator) and `aidp opa-agent` (beside each OPA).
# Build with `make image [IMAGE=name:tag]`. The Rego policies and the CRDs ship inside the package.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/aidp
WORKDIR /src
# only what the package build needs (see .dockerignore)
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY policies ./policies
COPY crds ./crds
# a regular (non-editable) install: bytecode is compiled now, the runtime filesystem is read-only
RUN /opt/aidp/bin/pip install . \
 && /opt/aidp/bin/aidp version

FROM python:3.11-slim-bookworm
ENV PATH=/opt/aidp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/aidp /opt/aidp
# the numeric user the chart runs as (runAsNonRoot needs a numeric UID); no shell profile, no home
USER 65532:65532
ENTRYPOINT ["aidp"]
CMD ["--help"]
