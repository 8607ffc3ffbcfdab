# llm-gateway: the gateway on port 8000, in front of OpenRouter (or any OpenAI-compatible API).
#
#   docker build -t llm-gateway .
#   docker run -p 8000:8000 -e OPENROUTER_API_KEY -e GATEWAY_API_KEYS llm-gateway
#   (or `docker compose up`: see docker-compose.yml)
#
# No secret is in the image: OPENROUTER_API_KEY and the client keys come from the environment
# when the container starts, and .dockerignore keeps .env out of the build context.
#
# The container listens on 0.0.0.0, and the gateway refuses to serve a non-loopback address
# without inbound keys (anyone who reaches it could spend the OpenRouter credits). So set
# GATEWAY_API_KEYS (comma-separated; clients send `Authorization: Bearer <key>`) or
# GATEWAY_API_KEYS_FILE, or, only when something in front already authenticates clients,
# GATEWAY_ALLOW_OPEN=true. Without OPENROUTER_API_KEY it serves the built-in emulator, unless
# GATEWAY_UPSTREAM=openrouter makes that a start-up error (docker-compose.yml sets it).

# Build stage: the package and its runtime dependencies (no dev extras) into a virtualenv.
FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir .

# Runtime stage: the virtualenv only; no source tree, no build tools.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_LOG_DIR=/app/logs \
    GATEWAY_BENCHMARKS_DIR=/app/benchmarks
# A fixed, non-root uid/gid, so volume ownership is predictable on every host. --no-log-init:
# useradd would otherwise grow /var/log/lastlog and faillog in proportion to the uid.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --no-log-init --uid 10001 --gid gateway --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir -p /app/logs /app/benchmarks \
    && chown -R gateway:gateway /app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Declared after the chown, so fresh named volumes start owned by the gateway user.
VOLUME ["/app/logs", "/app/benchmarks"]
# Numeric, so orchestrators can verify it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# /health never calls the upstream and needs no client key. Slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["llm-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
