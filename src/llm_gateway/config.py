"""Settings, read from the environment and `.env`; built by `create_app`, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llm_gateway.errors import ConfigError

OPENROUTER_URL = "https://openrouter.ai/api/v1"

# The key the gateway sends to its built-in emulator: not a secret, just a non-empty token.
EMULATOR_KEY = "emulator-key"

UpstreamMode = Literal["auto", "openrouter", "emulator"]


class Settings(BaseSettings):
    """Everything configurable: one field per `GATEWAY_*` variable, plus `OPENROUTER_API_KEY`."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    openrouter_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENROUTER_API_KEY", "openrouter_api_key"),
    )
    upstream: UpstreamMode = "auto"
    upstream_url: str = OPENROUTER_URL
    app_title: str = "llm-gateway"
    app_url: str | None = None

    # Inbound access: the keys clients must present, where the gateway may listen, CORS.
    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None
    allow_open: bool = False
    cors_origins: str = ""
    allowed_hosts: str = ""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    shutdown_grace: float = Field(default=10.0, gt=0)
    # Connections (server.py): slow or idle clients must not hold them for ever.
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    keepalive_timeout: int = Field(default=5, ge=1)
    max_connections: int = Field(default=10_000, ge=1)

    log_dir: Path = Path("logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    benchmarks_dir: Path = Path("benchmarks")

    connect_timeout: float = Field(default=10.0, gt=0)
    first_byte_timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=60.0, gt=0)
    total_timeout: float = Field(default=300.0, gt=0)
    stream_commit_after: float = Field(default=10.0, ge=0)
    # The most one upstream answer or stream may bring (decompressed): a stream that never ends
    # or a gzip bomb is cut here.
    max_upstream_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # 0: unbounded. A bound here queues requests silently; admission bounds them instead.
    upstream_pool_size: int = Field(default=0, ge=0)
    max_in_flight: int = Field(default=8192, ge=1)

    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base: float = Field(default=0.5, ge=0)
    retry_max_wait: float = Field(default=8.0, ge=0)
    retry_budget: float = Field(default=30.0, ge=0)

    models_cache_ttl: float = Field(default=600.0, ge=0)

    max_tokens_default: int = Field(default=512, ge=1)
    max_tokens_limit: int = Field(default=32768, ge=1)
    max_prompt_chars: int = Field(default=200_000, ge=1)

    bench_max_file_bytes: int = Field(default=1024 * 1024, ge=1)
    bench_max_prompts: int = Field(default=1000, ge=1)
    bench_max_runs: int = Field(default=100, ge=1)
    bench_max_models: int = Field(default=20, ge=1)
    bench_max_requests: int = Field(default=10_000, ge=1)
    bench_max_concurrency: int = Field(default=32, ge=1)
    bench_max_processes: int = Field(default=1, ge=1)
    bench_max_jobs: int = Field(default=2, ge=1)
    bench_request_timeout: float = Field(default=120.0, gt=0)
    bench_keep_runs: int = Field(default=200, ge=1)
    bench_max_bytes: int = Field(default=1024**3, ge=1)

    bench_stale_after: float = Field(default=30.0, ge=1)

    emulator_seed: int = 0
    emulator_time_scale: float = Field(default=1.0, ge=0)
    # An emulator already running, for the workers of `serve --workers N` to share (the
    # supervisor sets it); empty: the gateway starts its own when it serves the emulator.
    emulator_url: str | None = None

    # Many workers, many replicas (docs/scale-out.md).
    workers: int = Field(default=1, ge=1, le=64)
    redis_url: SecretStr | None = None
    redis_prefix: str = Field(default="llm-gateway", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    redis_timeout: float = Field(default=0.25, gt=0, le=10)
    rate_limit: str | None = None
    max_concurrent_per_key: int | None = Field(default=None, ge=1)

    @field_validator("upstream_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if urlsplit(value).username is not None:
            # The client sends the key as a bearer token; with credentials in the URL too it
            # would refuse every call.
            raise ValueError(
                "must not hold credentials (user:password@); put the key in OPENROUTER_API_KEY"
            )
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from limits import parse_many  # imported here: settings must load fast

        try:
            items = parse_many(value)
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a rate limit; write it like 60/minute or 10/second"
            ) from exc
        if len(items) != 1:
            raise ValueError("give one rate limit, like 60/minute")
        return value.strip()

    @field_validator("max_concurrent_per_key", mode="before")
    @classmethod
    def _blank_is_no_limit(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("emulator_url")
    @classmethod
    def _blank_url_is_none(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value and value.strip() else None

    @field_validator("openrouter_api_key")
    @classmethod
    def _blank_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    def inbound_keys(self) -> frozenset[str]:
        """The client keys from GATEWAY_API_KEYS (comma-separated) and GATEWAY_API_KEYS_FILE
        (one per line, `#` comments allowed); empty means the gateway is open."""
        keys: set[str] = set()
        if self.api_keys is not None:
            keys.update(k.strip() for k in self.api_keys.get_secret_value().split(","))
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"GATEWAY_API_KEYS_FILE cannot be read: {exc}") from exc
            keys.update(line.strip() for line in lines if not line.lstrip().startswith("#"))
        keys.discard("")
        return frozenset(keys)

    def secrets(self) -> list[str]:
        """What must never leave the process: the upstream key and the inbound keys."""
        key = self.openrouter_api_key
        redis_password = self.redis_password()
        return [
            *([key.get_secret_value()] if key else []),
            *self.inbound_keys(),
            *([redis_password] if redis_password else []),
        ]

    def redis_password(self) -> str | None:
        """The password in GATEWAY_REDIS_URL, if it has one (redacted like a key)."""
        if self.redis_url is None:
            return None
        from urllib.parse import urlsplit

        return urlsplit(self.redis_url.get_secret_value()).password or None

    def allowed_host_list(self) -> list[str] | None:
        """`Host` names served besides loopback ones, or None for any: with inbound keys a
        rebinding page cannot authenticate, so names matter only without them."""
        if self.inbound_keys():
            return None
        return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def resolved_upstream(self) -> Literal["openrouter", "emulator"]:
        """Which upstream this configuration serves: `auto` means OpenRouter iff a key is set."""
        if self.upstream == "openrouter":
            if self.openrouter_api_key is None:
                raise ConfigError(
                    "GATEWAY_UPSTREAM=openrouter but OPENROUTER_API_KEY is not set. "
                    "Put the key in the environment or in .env (see .env.example)."
                )
            return "openrouter"
        if self.upstream == "emulator":
            return "emulator"
        return "openrouter" if self.openrouter_api_key is not None else "emulator"
