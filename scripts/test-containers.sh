#!/usr/bin/env bash
# Builds the CPU serving image and tests it as a container, end to end, on a machine without an image registry:
#   1. installs with apt-get whatever of these Debian packages is missing: docker.io (dockerd, containerd, runc,
#      the docker client), docker-compose (v1, Python), debootstrap, curl, python3 and python3-pip (`pip download`);
#   2. starts dockerd in the background if no Docker daemon answers (log: build/dockerd.log) and stops it again
#      at the end (a daemon that was already running is used and left running); the images stay in
#      /var/lib/docker, and, as after any dockerd, the bridge docker0 and docker's iptables chains; if dockerd
#      cannot start with its default bridge networking it is started again with --iptables=false (published
#      ports then go through docker-proxy, which is enough here: the build itself needs no network);
#   3. builds the base image vae-base:bookworm from Debian's packages (scripts/base-image.sh; skipped if it exists);
#   4. downloads the serving dependencies as wheels for CPython 3.11 on bookworm (glibc <= 2.36) into build/wheels
#      with the host's pip and its configuration (indexes, proxy, CA bundle), so the image build needs no network
#      and keeps no credentials; skipped while pyproject.toml is unchanged;
#   5. builds the image vae-service:latest on the base with `docker-compose build vae` (BASE_IMAGE as a build arg)
#      and starts it with `docker-compose up -d --no-build vae` on host port 18000;
#   6. waits for the healthcheck, calls /encode (docs/example-trouser.png) and the v2 protocol's
#      /v2/models/fashion-mnist.decoder/infer through the published port, checks status and JSON shapes, checks
#      that the image holds no torch (`pip list` in it) and runs as uid 10001, and reports the image size;
#   7. stops the containers (`docker-compose down`) whatever happened.
# Needs root (dockerd, debootstrap). Every wait has a time limit. Settings: BASE_IMAGE (default vae-base:bookworm;
# python:3.11-slim works where a registry is reachable), VAE_HTTP_PORT (default 18000).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/test-containers.sh: run it as root (dockerd, debootstrap)" >&2; exit 1; }

export BASE_IMAGE=${BASE_IMAGE:-vae-base:bookworm}
export VAE_HTTP_PORT=${VAE_HTTP_PORT:-18000}
export COMPOSE_PROJECT_NAME=vae-containers-test
image=vae-service:latest
url=http://127.0.0.1:$VAE_HTTP_PORT
t0=$SECONDS
step() { printf '\n== %s  [%d s]\n' "$*" $((SECONDS - t0)); }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "Debian packages"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  timeout 900 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${need[@]}"
else
  echo "all there: skipped"
fi

dockerd_pid=""
project_up=""
cleanup() {
  rc=$?
  if [ -n "$project_up" ]; then
    [ "$rc" -eq 0 ] || timeout 60 docker-compose logs --no-color --tail 40 vae || true
    timeout 120 docker-compose down --remove-orphans || true
  fi
  if [ -n "$dockerd_pid" ]; then
    echo "stopping the dockerd this script started (pid $dockerd_pid)"
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  fi
  exit "$rc"
}
trap cleanup EXIT

# Starts dockerd with the given flags and waits up to 60 s for it to answer; 1 if it died or never answered.
start_dockerd() {
  mkdir -p build
  dockerd "$@" >> build/dockerd.log 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    timeout 10 docker info >/dev/null 2>&1 && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || { dockerd_pid=""; return 1; }
    sleep 1
  done
  kill "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=""
  return 1
}

step "Docker daemon"
if timeout 10 docker info >/dev/null 2>&1; then
  echo "a daemon answers: using it"
elif start_dockerd; then
  echo "started dockerd (pid $dockerd_pid)"
elif start_dockerd --iptables=false; then
  echo "started dockerd --iptables=false (pid $dockerd_pid): the default bridge could not be set up"
else
  tail -30 build/dockerd.log >&2
  fail "dockerd does not start (build/dockerd.log)"
fi

step "Base image $BASE_IMAGE"
if [ "$BASE_IMAGE" = vae-base:bookworm ]; then
  timeout 1200 bash scripts/base-image.sh "$BASE_IMAGE"
else
  echo "not the local base: the build uses $BASE_IMAGE as it is, or pulls it"
fi

step "Wheels for the serving dependencies (build/wheels)"
# CPython 3.11 on glibc 2.36 (bookworm, both bases): every manylinux tag such a system accepts, whatever the
# host's Python and glibc are.
arch=$(uname -m)
platforms=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat build/wheels/.stamp 2>/dev/null)" != "$want" ]; then
  rm -rf build/wheels
  timeout 900 python3 -m pip download -q -d build/wheels --only-binary=:all: --python-version 3.11 \
    --implementation cp --abi cp311 "${platforms[@]}" . 'setuptools>=77'
  echo "$want" > build/wheels/.stamp
else
  echo "up to date with pyproject.toml: skipped"
fi
echo "$(find build/wheels -name '*.whl' | wc -l) wheels, $(du -sh build/wheels | cut -f1)"

step "Build $image on $BASE_IMAGE"
build_start=$SECONDS
timeout 1800 docker-compose build vae
build_s=$((SECONDS - build_start))

step "Start the service (compose, port $VAE_HTTP_PORT)"
project_up=1
timeout 120 docker-compose up -d --no-build vae
cid=$(docker-compose ps -q vae)
health=""
for _ in $(seq 90); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$cid")
  [ "$health" = healthy ] && break
  [ "$health" = unhealthy ] && fail "the container is unhealthy"
  sleep 2
done
[ "$health" = healthy ] || fail "not healthy after 180 s (status: $health)"
echo "healthy after $((SECONDS - t0)) s"

step "Requests through the published port"
# POSTs with curl and prints the body; fails unless the status is 200.
post() { # path, curl arguments...
  local path=$1 body status
  shift
  body=$(mktemp)
  status=$(curl -sS --max-time 30 -o "$body" -w '%{http_code}' "$@" "$url$path") \
    || { rm -f "$body"; fail "POST $path"; }
  [ "$status" = 200 ] || { cat "$body" >&2; rm -f "$body"; fail "POST $path: status $status"; }
  cat "$body"
  rm -f "$body"
}
answer=$(post /encode -F images=@docs/example-trouser.png)
python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["model"] == "fashion-mnist" and r["latent_dim"] == 32, r
(res,) = r["results"]
assert len(res["mean"]) == 32 and len(res["logvar"]) == 32, res
print("/encode: 200, one result, mean and logvar of", len(res["mean"]))' "$answer"
request=$(python3 -c '
import json
print(json.dumps({"inputs": [{"name": "z", "shape": [1, 32], "datatype": "FP32", "data": [0.0] * 32}]}))')
answer=$(post /v2/models/fashion-mnist.decoder/infer -H 'content-type: application/json' --data-binary "$request")
python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["model_name"] == "fashion-mnist.decoder", r
(out,) = r["outputs"]
assert out["name"] == "mean" and out["shape"] == [1, 1, 28, 28] and out["datatype"] == "FP32", out
assert len(out["data"]) == 784 and all(0 <= v <= 1 for v in out["data"]), "784 pixel means in [0, 1]"
print("/v2/models/fashion-mnist.decoder/infer: 200, mean", out["shape"])' "$answer"

step "Image checks"
packages=$(timeout 120 docker run --rm --entrypoint pip "$image" list --format freeze)
grep -qi '^onnxruntime==' <<< "$packages" || fail "onnxruntime is not in the image"
if grep -qi '^torch' <<< "$packages"; then fail "torch is in the image: $(grep -i '^torch' <<< "$packages")"; fi
echo "pip list: $(wc -l <<< "$packages") packages, onnxruntime, no torch"
user=$(docker image inspect --format '{{.Config.User}}' "$image")
uid=$(docker exec "$cid" id -u)
case "$user" in ""|root|0|0:*|root:*) fail "the image runs as root (USER '$user')";; esac
[ "$uid" = 10001 ] || fail "the service runs as uid $uid, not 10001"
echo "user: $user (uid $uid)"
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "image $image on $BASE_IMAGE: $size bytes ($((size / 1000000)) MB); built in $build_s s"

step "Passed"
