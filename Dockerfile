# CPU serving image: FastAPI + onnxruntime, serving dependencies only (build: docker build -t vae-service .).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAE_HOST=0.0.0.0 \
    VAE_PORT=8000 \
    VAE_MODEL_DIR=/app/models

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service/ service/
RUN pip install --no-cache-dir . \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin vae
# The shipped models, so the image serves on its own; compose mounts ./models over them.
COPY models/ models/

USER vae
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=3).status == 200 else 1)"
CMD ["python", "-m", "service"]
