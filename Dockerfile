# syntax=docker/dockerfile:1
# jinaserve, CPU image: multi-stage, slim, non-root. Build: docker build -t jinaserve:cpu .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch first, from PyTorch's CPU index, so nothing pulls a CUDA build.
ARG TORCH_SPEC=torch==2.13.0
# hadolint ignore=DL3013  # pinned through the TORCH_SPEC build argument
RUN pip install --index-url https://download.pytorch.org/whl/cpu "${TORCH_SPEC}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 jinaserve \
    && useradd --system --uid 10001 --gid jinaserve --home-dir /home/jinaserve --create-home jinaserve \
    && mkdir -p /models \
    && chown jinaserve:jinaserve /models
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/jinaserve-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/models/hf \
    JINASERVE_HOST=0.0.0.0 \
    JINASERVE_PORT=8080 \
    JINASERVE_LOG_FORMAT=json
VOLUME ["/models"]
USER 10001:10001
WORKDIR /home/jinaserve
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('JINASERVE_PORT', '8080'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/jinaserve-entrypoint"]
CMD ["serve"]
