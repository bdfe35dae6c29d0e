# source-commsmining: Airbyte source for UiPath Communications Mining.
#
# The base image is pinned by digest and must equal `connectorBuildOptions.baseImage` in
# metadata.yaml (unit_tests/test_packaging.py checks both). 4.0.2 ships Python 3.11, which
# setup.py (python_requires >=3.10,<3.14) and airbyte-cdk 7.39.1 support; it already has the
# non-root `airbyte` user (uid 1000).
FROM docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73

WORKDIR /airbyte/integration_code

# Only what the installed connector needs: packaging files, then the package itself (its
# manifest.yaml and schemas/*.json are package data). The emulator and the tests stay out.
COPY setup.py README.md ./
COPY source_commsmining ./source_commsmining

# Installed as root into the image's Python, then run as the unprivileged user.
RUN pip install --no-cache-dir . \
    && source-commsmining spec > /dev/null

ENV AIRBYTE_ENTRYPOINT="source-commsmining"
ENTRYPOINT ["source-commsmining"]

USER airbyte

LABEL io.airbyte.version=0.2.0
LABEL io.airbyte.name=airbyte/source-commsmining
