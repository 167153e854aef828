"""All service settings in one pydantic-settings class, read from VAE_* environment variables.

`python -m service --host H --port P --model-dir DIR` sets the first three from flags; every field also
comes from the environment, e.g. VAE_MAX_K=2000 or VAE_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider.
Every size a client controls has a limit here; docs/api.md lists them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_dir: Path = Path("models")
    # Served when a request names no ?model=; None: "fashion-mnist" if loaded, else the first by name.
    default_model: str | None = None
    # "auto" (CUDA when onnxruntime-gpu sees a GPU, else CPU) or a comma-separated list of providers;
    # an explicit provider that cannot be had fails start-up.
    providers: str = "auto"
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads (0: onnxruntime's choice)")
    inter_op_threads: int = Field(0, ge=0, description="onnxruntime inter-op threads (0: onnxruntime's choice)")
    # onnxruntime's intra-op threads spin-wait after each call by default; in a server that calls it every few
    # ms they then take a core from the event loop (docs/performance.md, "Why this server stack"). False: they sleep.
    ort_spinning: bool = False
    worker_threads: int = Field(8, ge=1, description="threads for /loglik's estimate and other numerical work "
                                "(inference batches run on one thread per model graph)")
    image_threads: int = Field(1, ge=1, description="threads for image decoding and encoding too large to run "
                               "inline (mostly Python work under the GIL: more threads contend for it)")
    workers: int = Field(1, ge=1, le=64, description="server processes sharing the port (service/workers.py); "
                         "each loads the models, and with workers > 1 and intra_op_threads 0 each gets cores / "
                         "workers onnxruntime threads")
    log_level: str = "info"
    # One log line per request costs the event loop measurably (docs/performance.md); the Prometheus metrics
    # already count every request by endpoint, model and status. True: uvicorn's access log.
    access_log: bool = False
    # FastAPI's native OpenTelemetry (spans, metrics and logs, once an OpenTelemetry SDK is configured). Its
    # check of the global providers runs on every request, on the event loop's time (docs/performance.md);
    # the service's telemetry is Prometheus at /metrics. True: FastAPI's defaults.
    opentelemetry: bool = False
    # The inference routes' lean request handler (service/routing.py), for routes whose only dependency is their
    # own reader; false: FastAPI's own handler for them too (slower; docs/performance.md compares the two).
    lean_routes: bool = True
    # The interpreter under load (service/runtime.py): how soon a thread waiting for the GIL (the batch
    # thread, with onnxruntime's outputs) makes the busy event loop hand it over (Python's default: 5000 us),
    # and the allocations between young-generation garbage collections (Python's default: 700).
    gil_switch_interval_us: float = Field(50.0, gt=0, le=100_000)
    gc_threshold: int = Field(10_000, ge=1)

    # Limits on what a client controls.
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="request body size")
    max_image_pixels: int = Field(4_000_000, ge=1, description="width x height of one uploaded image")
    max_images: int = Field(64, ge=1, description="images (or latent vectors) per request")
    max_samples: int = Field(256, ge=1, description="n of /sample")
    max_encode_samples: int = Field(64, ge=0, description="z draws per image on /encode")
    max_k: int = Field(5000, ge=1, description="importance samples per image on /loglik")
    default_k: int = Field(1000, ge=1, description="k of /loglik when the request gives none")
    loglik_min_ess: float = Field(10.0, ge=0, description="a /loglik result whose importance weights have a "
                                  "smaller effective sample size carries a warning (its estimate has not converged)")
    max_latent_abs: float = Field(100.0, gt=0, description="largest |z| value accepted by /decode")
    max_temperature: float = Field(10.0, gt=0, description="largest prior temperature of /sample")
    max_strength: float = Field(10.0, gt=0, description="largest |strength| of /resynthesize")
    max_steps: int = Field(64, ge=2, description="most steps of /interpolate")
    # Dynamic batching: concurrent requests for one graph of one model share an onnxruntime call of at most
    # batch_max_rows rows: all that queued while the previous call ran, plus any that arrive within
    # batch_max_delay_ms of the first. 0 (default) never waits: a lone request runs at once, and under load
    # the queue fills while the sessions are busy (a lone request waits for nobody).
    batching: bool = True
    batch_max_rows: int = Field(64, ge=1)
    batch_max_delay_ms: float = Field(0.0, ge=0)
    # Decoder rows (importance samples x images) per pass: bounds /loglik's memory for any allowed k.
    loglik_batch_rows: int = Field(4096, ge=1)

    # Work and memory bounds (docs/operations.md): past them a request gets 503 with Retry-After at once
    # instead of waiting in an unbounded queue.
    max_queued_rows: int = Field(4096, ge=1, description="rows waiting for one graph's batcher, per model")
    loglik_max_rows: int = Field(640_000, ge=1, description="importance-sample rows (k x images) of /loglik "
                                 "requests admitted at once per model, running or waiting")
    loglik_concurrency: int = Field(2, ge=1, description="/loglik estimates computed at once per model")
    retry_after_s: int = Field(1, ge=0, description="Retry-After of a 503 for overload")
    json_inline_bytes: int = Field(65536, ge=0, description="JSON bodies larger than this are parsed on the "
                                   "image thread, off the event loop")
    max_body_bytes_in_flight: int = Field(128 * 1024 * 1024, ge=1024, description="request body bytes held at "
                                          "once by all requests being read or answered (a request alone is "
                                          "always admitted)")

    # Limits at the connection (service/server.py): request line and headers, timeouts, open connections.
    max_request_line_bytes: int = Field(8192, ge=256, description="method, target and version of a request")
    max_header_bytes: int = Field(16384, ge=256, description="one header line")
    max_headers_bytes: int = Field(65536, ge=1024, description="all header lines of a request")
    max_headers: int = Field(100, ge=1, description="header lines of a request")
    header_timeout_s: float = Field(10.0, gt=0, description="time for a request's line and headers to arrive")
    body_timeout_s: float = Field(10.0, gt=0, description="longest wait for the next bytes of a request body")
    body_min_rate: int = Field(1024, ge=0, description="bytes/s a request body must average once it has taken "
                               "longer than body_timeout_s (0: no minimum)")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="an idle keep-alive connection closes after this")
    max_connections: int = Field(1024, ge=1, description="open connections; past it a new one gets 503")
    max_requests_in_progress: int = Field(512, ge=1, description="requests being answered; past it 503")
    health_reserve: int = Field(16, ge=0, description="connections and requests beyond both caps kept for "
                                "/healthz and /readyz")
    forwarded_allow_ips: str = Field("", description="proxies trusted for X-Forwarded-For/-Proto (comma-"
                                     "separated addresses, * for any); empty: none")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="after SIGTERM, in-flight requests get this long "
                                      "to finish")

    # Access (service/access.py): API keys, rate limits, CORS, request IDs and logs.
    api_keys_file: Path | None = Field(None, description="JSON file of sha256-hashed API keys and roles; "
                                       "unset: no keys asked")
    rate_limit: float = Field(0.0, ge=0, description="requests per second per API key (per client address "
                              "without keys); 0: no limit")
    rate_limit_burst: int = Field(0, ge=0, description="token bucket size; 0: twice rate_limit (at least 1)")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS (* for any); empty: off")
    json_logs: bool = Field(False, description="log lines as JSON objects, one per line")

    # Reloading model folders (service/reload.py): also POST /admin/reload.
    reload_interval_s: float = Field(0.0, ge=0, description="poll the model directory for changed folders this "
                                     "often; 0: only on POST /admin/reload")

    @model_validator(mode="after")
    def default_within_limit(self) -> Settings:
        if self.default_k > self.max_k:
            raise ValueError(f"VAE_DEFAULT_K ({self.default_k}) must not exceed VAE_MAX_K ({self.max_k})")
        return self

    def provider_list(self) -> list[str] | None:
        """None for auto, else the explicit providers in order."""
        if self.providers.strip().lower() == "auto":
            return None
        return [p.strip() for p in self.providers.split(",") if p.strip()]

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
