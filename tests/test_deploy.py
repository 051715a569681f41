"""The deployment manifests (deploy/): valid Kubernetes and KServe resources, and in agreement with the service they
run: the Dockerfile, docker-compose.yml and the settings (service/config.py) give the port, the probe paths, the
environment names, the user and the shutdown time, and each manifest must say the same, so none can drift."""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import MODELS_DIR, REPO_ROOT, wait_until_ready

DEPLOY = REPO_ROOT / "deploy"
SETTINGS = Settings(_env_file=None)  # the defaults, as the image starts with them
SETTINGS_ENV = {f"SENTIMENT_{name.upper()}" for name in Settings.model_fields}
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["sentiment"]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
RUNTIME_STAGE = DOCKERFILE.split("FROM ", 2)[1]  # the runtime image, not the training one


def load(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def base() -> dict[str, dict]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = [DEPLOY / "k8s" / name for name in kustomization["resources"]]
    return {resource["kind"]: resource for path in files for resource in load(path)}


RESOURCES = base()
DEPLOYMENT = RESOURCES["Deployment"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
(INFERENCE_SERVICE,) = load(DEPLOY / "kserve" / "inferenceservice.yaml")
PREDICTOR = INFERENCE_SERVICE["spec"]["predictor"]
(KSERVE_CONTAINER,) = PREDICTOR["containers"]
API_KEY_PATCH = yaml.safe_load((DEPLOY / "k8s" / "components" / "api-key" / "patch.yaml").read_text())


def dockerfile_env() -> dict[str, str]:
    """The runtime image's ENV (``ENV A=1 \\ B=2`` blocks)."""
    env = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", RUNTIME_STAGE, flags=re.MULTILINE | re.DOTALL):
        env.update(re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")))
    return env


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def container_port(container: dict, port: int | str) -> int:
    """A probe's or a Service's port as a number (it may name one of the container's ports)."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def healthcheck_url(test: str) -> tuple[int, str]:
    port, path = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", test).groups()
    return int(port), path


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration).groups()
    return float(value) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def graceful_shutdown(container: dict) -> float:
    return float(env_of(container).get("SENTIMENT_GRACEFUL_SHUTDOWN_SECONDS", SETTINGS.graceful_shutdown_seconds))


def pre_stop_seconds(container: dict) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return float(command[1])


# ---- schema validation (deploy/validate.py, which CI runs too)


@pytest.fixture(scope="module")
def validate():
    """deploy/validate.py, with kubernetes-validate (deploy/requirements.txt, which requirements-dev.txt includes)."""
    return importlib.import_module("deploy.validate")


def test_the_manifests_are_valid_against_the_kubernetes_and_kserve_schemas(validate):
    lines = []
    validate.validate_all(log=lines.append)
    assert len(lines) >= 3, lines


@pytest.mark.parametrize(("mistake", "message"), [
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenessProbe={"httpGet": {"path": "/healthz"}}),
     "port"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}), "readinesProbe"),
    (lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds="30"), "is not of type"),
])
def test_a_deployment_with_a_mistake_fails_validation(validate, mistake, message):
    broken = copy.deepcopy(DEPLOYMENT)
    mistake(broken)
    with pytest.raises(validate.ManifestError, match=message):
        validate.validate_kubernetes(broken, "test")


@pytest.mark.parametrize(("mistake", "message"), [
    (lambda s: s["spec"]["predictor"].update(scaleMetric="gpu"), "'gpu' is not one of"),
    (lambda s: s["spec"]["predictor"].update(minReplica=1), "fields that KServe's PredictorSpec does not: minReplica"),
    (lambda s: s["spec"]["predictor"]["containers"][0].update(ports=[{"containerPort": "http"}]),
     "'http' is not of type 'integer'"),
    (lambda s: s["spec"].update(predicter={}), "predicter"),
    (lambda s: s.update(apiVersion="serving.kserve.io/v1alpha1"), "v1beta1"),
])
def test_an_inference_service_with_a_mistake_fails_validation(validate, tmp_path, mistake, message):
    broken = copy.deepcopy(INFERENCE_SERVICE)
    mistake(broken)
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(validate.ManifestError, match=message):
        validate.validate_inference_service(path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
def test_kustomize_renders_the_base_files_and_the_api_key_component_as_validate_applies_it(validate, tmp_path):
    rendered = validate.kustomize(DEPLOY / "k8s")
    assert sorted(rendered, key=lambda r: r["kind"]) == sorted(RESOURCES.values(), key=lambda r: r["kind"])
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = Path(os.path.relpath(DEPLOY / "k8s", overlay))
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(relative)], "components": [str(relative / "components" / "api-key")]}))
    expected = validate.with_api_key_component(list(RESOURCES.values()))
    assert sorted(validate.kustomize(overlay), key=lambda r: r["kind"]) == sorted(expected, key=lambda r: r["kind"])


def test_ci_validates_the_manifests_with_a_pinned_validator():
    pins = (DEPLOY / "requirements.txt").read_text()
    assert re.search(r"^kubernetes-validate==[\d.]+$", pins, flags=re.MULTILINE)
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "deploy/requirements.txt" in ci and "deploy/validate.py" in ci


# ---- agreement with the Dockerfile, the compose file and the settings


def test_the_port_is_the_same_in_the_settings_image_compose_file_and_manifests():
    port = int(dockerfile_env()["SENTIMENT_PORT"])
    assert port == SETTINGS.port
    assert f"EXPOSE {port}" in RUNTIME_STAGE
    assert healthcheck_url(RUNTIME_STAGE.split("HEALTHCHECK", 1)[1])[0] == port
    assert [mapping.rsplit(":", 1)[1] for mapping in COMPOSE["ports"]] == [str(port)]
    assert healthcheck_url(" ".join(COMPOSE["healthcheck"]["test"]))[0] == port
    for container in (CONTAINER, KSERVE_CONTAINER):
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert int(env_of(container).get("SENTIMENT_PORT", port)) == port
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container_port(container, container[probe]["httpGet"]["port"]) == port, probe
    service_port = RESOURCES["Service"]["spec"]["ports"][0]
    assert container_port(CONTAINER, service_port["targetPort"]) == port


def test_the_probes_are_the_services_open_health_routes():
    compose_path = healthcheck_url(" ".join(COMPOSE["healthcheck"]["test"]))[1]
    image_path = healthcheck_url(RUNTIME_STAGE.split("HEALTHCHECK", 1)[1])[1]
    assert compose_path == image_path == "/readyz"
    probes = {probe: CONTAINER[probe]["httpGet"]["path"]
              for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": "/readyz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    kserve = {probe: KSERVE_CONTAINER[probe]["httpGet"]["path"]
              for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert kserve == {"startupProbe": "/v2/health/ready", "livenessProbe": "/v2/health/live",
                      "readinessProbe": "/v2/health/ready"}
    # each is a route of the service that answers 200 once it is warm, without the API key it may be configured with
    settings = Settings(model_dir=MODELS_DIR, api_keys=["a-key"], access_log=False)
    with TestClient(create_app(settings)) as client:
        wait_until_ready(client)
        for path in {*probes.values(), *kserve.values()}:
            assert client.get(path).status_code == 200, path
        assert client.post("/predict", json={"reviews": ["Good."]}).status_code == 401  # the key is on


def test_every_environment_name_in_the_manifests_and_compose_file_is_a_setting():
    names = {
        "Dockerfile": set(dockerfile_env()) - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
                                               "PIP_DISABLE_PIP_VERSION_CHECK"},
        "docker-compose.yml": set(COMPOSE["environment"]),
        "deploy/k8s/deployment.yaml": set(env_of(CONTAINER)),
        "deploy/k8s/components/api-key/patch.yaml": {op["value"]["name"] for op in API_KEY_PATCH
                                                     if op["path"].endswith("/env/-")},
        "deploy/kserve/inferenceservice.yaml": set(env_of(KSERVE_CONTAINER)),
    }
    for where, found in names.items():
        assert found and found <= SETTINGS_ENV, f"{where}: not settings: {sorted(found - SETTINGS_ENV)}"
    # Kubernetes and KServe run the service alike, and every value is one the settings accept
    assert env_of(CONTAINER) == env_of(KSERVE_CONTAINER)
    prefix = len("SENTIMENT_")
    Settings(**{name[prefix:].lower(): value for name, value in env_of(CONTAINER).items()})


def test_the_termination_grace_period_fits_the_graceful_shutdown():
    for pod, container in ((POD, CONTAINER), (PREDICTOR, KSERVE_CONTAINER)):
        needed = pre_stop_seconds(container) + graceful_shutdown(container)
        assert pod["terminationGracePeriodSeconds"] >= needed + 2, (pod["terminationGracePeriodSeconds"], needed)
    assert seconds(COMPOSE["stop_grace_period"]) > SETTINGS.graceful_shutdown_seconds


def test_the_pods_run_as_the_images_user_on_a_read_only_root_with_a_writable_tmp():
    user = int(re.search(r"^USER (\d+)$", RUNTIME_STAGE, flags=re.MULTILINE).group(1))
    assert f"--uid {user}" in RUNTIME_STAGE
    assert COMPOSE["read_only"] is True and COMPOSE["tmpfs"] == ["/tmp"]
    for pod, container in ((POD, CONTAINER), (PREDICTOR, KSERVE_CONTAINER)):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == user
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
        assert "emptyDir" in volume


def test_the_image_and_resources_match_the_compose_file():
    image = COMPOSE["image"].rsplit(":", 1)[0]
    for container in (CONTAINER, KSERVE_CONTAINER):
        assert container["image"].rsplit(":", 1)[0] == image
        assert set(container["resources"]) == {"requests", "limits"}
        limits = container["resources"]["limits"]
        assert float(limits["cpu"]) >= int(env_of(container)["SENTIMENT_WORKERS"])
        assert limits["memory"] in ("1Gi", "1G") and COMPOSE["deploy"]["resources"]["limits"]["memory"] == "1g"


def test_the_api_key_secret_is_mounted_as_the_key_file():
    assert "SENTIMENT_API_KEYS_FILE" in SETTINGS_ENV
    added = {op["path"].rsplit("/", 2)[-2]: op["value"] for op in API_KEY_PATCH}
    key_file = Path(added["env"]["value"])
    assert added["env"]["name"] == "SENTIMENT_API_KEYS_FILE"
    assert added["volumeMounts"] == {"name": added["volumes"]["name"], "mountPath": str(key_file.parent),
                                     "readOnly": True}
    assert added["volumes"]["secret"]["items"] == [{"key": "api-keys", "path": key_file.name}]
    assert added["volumes"]["secret"]["defaultMode"] == 0o440 and POD["securityContext"]["fsGroup"] == 10001
    assert "SENTIMENT_API_KEYS_FILE" not in env_of(CONTAINER)  # without the component: no authentication


def test_the_service_budget_and_autoscaler_select_the_deployments_pods():
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    for selector in (DEPLOYMENT["spec"]["selector"]["matchLabels"], RESOURCES["Service"]["spec"]["selector"],
                     RESOURCES["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    hpa = RESOURCES["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": DEPLOYMENT["metadata"]["name"]}
    assert [metric["resource"]["name"] for metric in hpa["metrics"]] == ["cpu"]
    assert "replicas" not in DEPLOYMENT["spec"]  # the autoscaler owns the count
    assert hpa["minReplicas"] > RESOURCES["PodDisruptionBudget"]["spec"]["minAvailable"]
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert PREDICTOR["scaleMetric"] == "cpu" and PREDICTOR["minReplicas"] == hpa["minReplicas"]
    assert KSERVE_CONTAINER["name"] == "kserve-container"


def test_the_validator_runs_from_the_command_line(validate):
    result = subprocess.run([sys.executable, "deploy/validate.py"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "deploy/kserve/inferenceservice.yaml: valid" in result.stdout
