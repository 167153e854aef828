# CPU serving image: FastAPI + onnxruntime, the serving dependencies only (no torch), in a virtual environment
# /opt/venv, run as the unprivileged user vae (uid 10001).
#   docker build -t vae-service .                                            # on python:3.11-slim
#   docker build --build-arg BASE_IMAGE=vae-base:bookworm -t vae-service .   # on scripts/base-image.sh's base
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module. A virtual environment works on
# both: Debian's python3 has no `python` command and refuses system-wide pip installs (PEP 668).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
# Wheels prepared on the host in build/wheels (scripts/test-containers.sh does it, with the host's pip
# configuration: its indexes, proxy and CA bundle) make the install offline, so no credentials or certificates
# enter the image. Without them pip uses its default index. The glob lets COPY succeed when the folder is absent
# (pyproject.toml is there only so that COPY always has a source).
COPY pyproject.toml build/wheel[s] /wheels/
RUN python3 -m venv /opt/venv \
 && if ls /wheels/*.whl >/dev/null 2>&1; then \
      /opt/venv/bin/pip install --no-index --find-links /wheels . ; \
    else \
      /opt/venv/bin/pip install . ; \
    fi

# The final stage holds the environment, not the wheels or the sources it was built from.
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAE_HOST=0.0.0.0 \
    VAE_PORT=8000 \
    VAE_MODEL_DIR=/app/models

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin vae
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The shipped models, so the image serves on its own; compose mounts ./models over them.
COPY models/ models/

USER vae
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=3).status == 200 else 1)"
CMD ["python", "-m", "service"]
