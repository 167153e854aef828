"""Access (service/access.py, service/middleware.py): API keys and roles, rate limits, CORS, request IDs, nosniff
and JSON logs over HTTP against the real server (`python -m service`); the token bucket's math and the keys
file's checks in-process."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from service.api_keys import Keys, load_keys, main, presented_key
from service.rate_limit import TokenBuckets
from service.registry import StartupError
from tests.service.conftest import ROOT, free_port, running_server, server_process

USER_KEY, ADMIN_KEY, WRONG_KEY = "vae_user-4f1c2a77e0", "vae_admin-9b7e3d11c5", "vae_wrong-0d2b6f9a41"
EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()
MADE_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")  # service/middleware.py: the process prefix, a counter


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped model alone: the server starts in seconds, with no model to train."""
    root = tmp_path_factory.mktemp("access_models")
    (root / "fashion-mnist").symlink_to(ROOT / "models" / "fashion-mnist")
    return root


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("access_keys") / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "ci", "sha256": sha256(USER_KEY), "role": "user"},
                                         {"name": "ops", "sha256": sha256(ADMIN_KEY).upper(), "role": "admin"}]}))
    return path


@pytest.fixture(scope="module")
def keyed(models, keys_file):
    with running_server(models, VAE_API_KEYS_FILE=str(keys_file)) as address, \
            httpx.Client(base_url=f"http://{address}", timeout=30) as client:
        yield client


# API keys and roles.

def test_no_key_is_401_in_each_protocols_error_shape(keyed):
    r = keyed.post("/encode", files={"images": ("boot.png", EXAMPLE_PNG, "image/png")})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"error": {"status": 401, "field": None, "message": "an API key is required: "
                                  "Authorization: Bearer <key> or X-API-Key: <key>"}}
    model = "/v2/models/fashion-mnist.encoder"
    for r in (keyed.get(model), keyed.post(f"{model}/infer", json={})):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>"}
    for path in ("/models", "/docs", "/openapi.json", "/v2"):
        assert keyed.get(path).status_code == 401, path


def test_wrong_key_is_401(keyed):
    for headers in (bearer(WRONG_KEY), {"X-API-Key": WRONG_KEY}, bearer(sha256(USER_KEY))):
        r = keyed.get("/models", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert r.json()["error"]["message"] == "the API key is not valid"


def test_user_key_by_either_header(keyed):
    for headers in (bearer(USER_KEY), {"authorization": f"bearer {USER_KEY}"}, {"X-API-Key": USER_KEY}):
        assert keyed.get("/models", headers=headers).status_code == 200, headers
    r = keyed.post("/encode", files={"images": ("boot.png", EXAMPLE_PNG, "image/png")}, headers=bearer(USER_KEY))
    assert r.status_code == 200 and len(r.json()["results"][0]["mean"]) == 32
    assert keyed.get("/v2/models/fashion-mnist.encoder", headers={"X-API-Key": USER_KEY}).status_code == 200
    assert keyed.get("/openapi.json", headers=bearer(USER_KEY)).status_code == 200


def test_admin_paths_need_the_admin_role(keyed):
    r = keyed.get("/metrics", headers=bearer(USER_KEY))
    assert r.status_code == 403
    assert r.json() == {"error": {"status": 403, "field": None,
                                  "message": "the API key 'ci' has role user; this path needs role admin"}}
    assert keyed.post("/admin/reload", headers={"X-API-Key": USER_KEY}).status_code == 403
    keyed.get("/models")  # one more refusal without a key, so both reasons are counted by now
    r = keyed.get("/metrics", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200
    assert re.search(r'vae_rejected_total\{reason="unauthorized"\} [1-9]', r.text)
    assert re.search(r'vae_rejected_total\{reason="forbidden"\} [1-9]', r.text)
    assert keyed.get("/models", headers=bearer(ADMIN_KEY)).status_code == 200  # admin may do what user may


def test_health_routes_are_open(keyed):
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert keyed.get(path).status_code == 200, path


# Headers every answer carries.

def test_nosniff_on_every_answer(keyed):
    answers = {200: keyed.get("/healthz"), 401: keyed.get("/models"),
               403: keyed.get("/metrics", headers=bearer(USER_KEY)),
               404: keyed.get("/no-such-route", headers=bearer(USER_KEY)),
               422: keyed.get("/sample", params={"n": -1}, headers=bearer(USER_KEY))}
    for status, r in answers.items():
        assert r.status_code == status and r.headers["x-content-type-options"] == "nosniff", status


def test_request_ids(keyed):
    given = "trace.Abc-123_x"
    assert keyed.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"] == given
    made = [keyed.get("/healthz").headers["x-request-id"] for _ in range(2)]
    assert all(MADE_ID.fullmatch(m) for m in made) and made[0] != made[1]
    for hostile in ("a" * 500, "abc$def", "a b", ""):
        answered = keyed.get("/models", headers={"X-Request-ID": hostile}).headers["x-request-id"]
        assert MADE_ID.fullmatch(answered), hostile  # replaced, whatever the answer (here 401)


def test_no_cors_headers_without_the_setting(keyed):
    origin = {"Origin": "https://a.example"}
    assert "access-control-allow-origin" not in keyed.get("/models", headers=origin | bearer(USER_KEY)).headers
    preflight = keyed.options("/encode", headers=origin | {"Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


# Rate limits.

def test_rate_limit_answers_429_until_a_token_is_back(models):
    with running_server(models, VAE_RATE_LIMIT="5", VAE_RATE_LIMIT_BURST="5") as address, \
            httpx.Client(base_url=f"http://{address}", timeout=30) as client:
        statuses = [client.get("/models").status_code for _ in range(6)]  # well within 0.2 s: no token comes back
        refused = client.get("/models")
        assert statuses == [200] * 5 + [429] and refused.status_code == 429
        assert refused.headers["retry-after"] == "1"  # 1/5 s to the next token, rounded up
        assert (refused.headers["ratelimit-limit"], refused.headers["ratelimit-remaining"],
                refused.headers["ratelimit-reset"]) == ("5", "0", "1")  # full again within a second
        assert refused.json()["error"]["status"] == 429
        assert all(client.get("/healthz").status_code == 200 for _ in range(10))  # health is never limited
        time.sleep(int(refused.headers["retry-after"]))
        assert client.get("/models").status_code == 200


def test_token_bucket_math():
    now = [100.0]  # the clock steps below are binary fractions: exact in floating point
    buckets = TokenBuckets(rate=4, burst=4, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [0.0] * 4
    assert buckets.take("a") == 0.25  # empty: one token comes back in 1/rate s
    assert buckets.until_full("a") == 1.0
    assert buckets.take("b") == 0.0  # each client has its own bucket
    now[0] += 0.125
    assert buckets.take("a") == 0.125  # half a token back; a refusal takes nothing
    now[0] += 0.125
    assert buckets.take("a") == 0.0 and buckets.take("a") == 0.25
    now[0] += 60
    assert [buckets.take("a") for _ in range(5)][-2:] == [0.0, 0.25]  # refilled to burst, no more


def test_token_bucket_table_is_bounded():
    now = [0.0]
    buckets = TokenBuckets(rate=1, burst=2, max_clients=8, clock=lambda: now[0])
    for i in range(1000):  # a client spraying addresses, each bucket still refilling
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets.table) <= 8 and "10.0.3.231" in buckets.table  # the newest kept, the oldest forgotten
    now[0] += 5  # every bucket has refilled: forgetting them loses nothing
    buckets.take("late")
    assert list(buckets.table) == ["late"]


# CORS.

def test_cors_for_the_configured_origin_only(models, keys_file):
    with running_server(models, VAE_CORS_ORIGINS="https://a.example", VAE_API_KEYS_FILE=str(keys_file)) as address, \
            httpx.Client(base_url=f"http://{address}", timeout=30) as client:
        ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = client.options("/encode", headers={"Origin": "https://a.example"} | ask)
        assert allowed.status_code == 200  # answered before any key is asked for
        assert allowed.headers["access-control-allow-origin"] == "https://a.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options("/encode", headers={"Origin": "https://b.example"} | ask)
        assert "access-control-allow-origin" not in refused.headers
        # a page on the origin can read an error, and the request ID, from the answer to its request
        r = client.get("/models", headers={"Origin": "https://a.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://a.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-origin" not in client.get("/models", headers={"Origin": "https://b.example"}).headers


# Logs.

def test_json_logs_carry_the_request_id_and_never_a_key(models, keys_file):
    env = dict(VAE_API_KEYS_FILE=str(keys_file), VAE_JSON_LOGS="true", VAE_LOG_LEVEL="info", VAE_ACCESS_LOG="true")
    with server_process(models, **env) as (address, proc), \
            httpx.Client(base_url=f"http://{address}", timeout=30) as client:
        client.get("/models", headers={"X-Request-ID": "trace-no-key"})
        client.get("/models", headers={"X-Request-ID": "trace-wrong", "X-API-Key": WRONG_KEY})
        client.get("/metrics", headers={"X-Request-ID": "trace-user"} | bearer(USER_KEY))
        client.get("/metrics", headers={"X-Request-ID": "trace-admin"} | bearer(ADMIN_KEY))
    output = proc.stdout.read()
    for secret in (USER_KEY, ADMIN_KEY, WRONG_KEY, sha256(USER_KEY)[:16], sha256(ADMIN_KEY)[:16],
                   sha256(WRONG_KEY)[:16]):
        assert secret not in output and secret.upper() not in output
    records = json_lines(output)
    assert all({"time", "level", "logger", "message", "request_id"} <= r.keys() for r in records)
    by_id = {r["request_id"]: r for r in records if r["logger"] == "service.access"}
    assert by_id["trace-no-key"]["message"] == "refused GET '/models': unauthorized"
    assert by_id["trace-wrong"]["level"] == "INFO" and by_id["trace-user"]["message"].endswith("forbidden")
    access = [r for r in records if r["logger"] == "uvicorn.access" and r["request_id"] == "trace-admin"]
    assert len(access) == 1 and "/metrics" in access[0]["message"]


def json_lines(output: str) -> list[dict]:
    """Every line of the output as the JSON object it must be."""
    records = []
    for line in filter(str.strip, output.splitlines()):
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line (does python -m service apply service.logs.log_config?): {line!r}")
    return records


# The keys file and its command line.

def test_a_missing_keys_file_stops_start_up(models, tmp_path):
    missing = tmp_path / "nope.json"
    env = {**os.environ, "VAE_PROVIDERS": "CPUExecutionProvider", "VAE_API_KEYS_FILE": str(missing)}
    done = subprocess.run([sys.executable, "-m", "service", "--port", str(free_port()), "--model-dir", str(models)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"VAE_API_KEYS_FILE {missing}: cannot read it" in done.stdout + done.stderr


GOOD = {"name": "ci", "sha256": "ab" * 32, "role": "user"}


@pytest.mark.parametrize("content, problem", [
    ("{not json", "Invalid JSON"),
    ('{"keys": []}', "keys: List should have at least 1 item"),
    (json.dumps({"keys": [GOOD | {"role": "root"}]}), "keys.0.role: Input should be 'user' or 'admin'"),
    (json.dumps({"keys": [GOOD | {"sha256": "abc"}]}), "keys.0.sha256: String should match pattern"),
    (json.dumps({"keys": [{"name": "ci", "key": "plain-secret-123", "role": "user"}]}), "keys.0.key: Extra inputs"),
    (json.dumps({"keys": [GOOD, GOOD | {"sha256": "cd" * 32}]}), "two keys have the same name"),
])
def test_an_invalid_keys_file_is_refused_without_quoting_it(tmp_path, content, problem):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(StartupError) as caught:
        load_keys(path)
    assert str(caught.value).startswith(f"VAE_API_KEYS_FILE {path}: ") and problem in str(caught.value)
    assert "plain-secret-123" not in str(caught.value)


def test_keys_match_in_any_hex_case(keys_file):
    keys = load_keys(keys_file)
    assert keys.match(USER_KEY.encode()).role == "user"  # type: ignore[union-attr]
    assert keys.match(ADMIN_KEY.encode()).name == "ops"  # type: ignore[union-attr]
    assert keys.match(WRONG_KEY.encode()) is None and keys.match(b"") is None
    assert isinstance(keys, Keys)


def test_presented_key():
    assert presented_key([(b"authorization", b"Bearer  k1 ")]) == b"k1"
    assert presented_key([(b"x-api-key", b"k2"), (b"authorization", b"BEARER k1")]) == b"k1"  # Bearer first
    assert presented_key([(b"authorization", b"Basic dTpw"), (b"x-api-key", b"k2")]) == b"k2"
    assert presented_key([(b"authorization", b"Bearer "), (b"accept", b"*/*")]) is None


def test_new_key_command(tmp_path, capsys):
    assert main(["new-key", "--name", "deploy-bot", "--role", "admin"]) == 0
    key_line, entry_line = capsys.readouterr().out.splitlines()
    key, entry = key_line.removeprefix("key:").strip(), json.loads(entry_line.removeprefix("entry:"))
    assert entry == {"name": "deploy-bot", "sha256": sha256(key), "role": "admin"} and len(key) > 40
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry]}))
    assert load_keys(tmp_path / "keys.json").match(key.encode()).name == "deploy-bot"  # type: ignore[union-attr]
