"""Validates the deployment manifests offline: ``python deploy/validate.py`` (CI runs it; tests/test_deploy.py too).

* ``deploy/k8s`` (the kustomize base), the base with its API-key component, and the example overlay, each rendered
  (``kubectl kustomize`` when kubectl is installed, else the base's files read as they are and the component's JSON
  6902 patch applied here), every resource checked against the Kubernetes JSON schemas that ``kubernetes-validate``
  bundles (strict: an unknown field is an error), for each Kubernetes version in ``KUBERNETES_VERSIONS``.
* ``deploy/kserve/inferenceservice.yaml``: KServe's CRD is not among those schemas, so the InferenceService is
  checked against ``deploy/kserve/inferenceservice.schema.json`` (written from KServe's v1beta1 API), its predictor's
  pod fields as a Kubernetes PodSpec (the same strict schemas), and a predictor field in neither is an error.

Nothing here needs a cluster or the network.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import schema_contents

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
API_KEY_COMPONENT = K8S / "components" / "api-key"
OVERLAY = DEPLOY / "overlays" / "production"
INFERENCE_SERVICE = DEPLOY / "kserve" / "inferenceservice.yaml"
INFERENCE_SERVICE_SCHEMA = DEPLOY / "kserve" / "inferenceservice.schema.json"
# The oldest Kubernetes the manifests are meant for (sidecar-free, autoscaling/v2, policy/v1) and the newest that
# kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


class ManifestError(Exception):
    """A manifest that does not validate: the message names the file, the resource and the field."""


def load_all(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def base_files() -> list[Path]:
    """The resource files the base lists, in its order."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return [K8S / name for name in kustomization["resources"]]


def base_resources() -> list[dict]:
    return [resource for path in base_files() for resource in load_all(path)]


def apply_json6902(resource: dict, operations: list[dict]) -> dict:
    """``resource`` with the ``add`` operations of a JSON 6902 patch applied (all the component uses)."""
    patched = copy.deepcopy(resource)
    for operation in operations:
        if operation["op"] != "add":
            raise ManifestError(f"only 'add' operations are applied offline, got {operation['op']!r}")
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        target = patched
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), copy.deepcopy(operation["value"]))
        else:
            target[last] = copy.deepcopy(operation["value"])
    return patched


def with_api_key_component(resources: list[dict]) -> list[dict]:
    """The base with components/api-key applied, as kustomize applies it (its patch, on the Deployment it targets)."""
    component = yaml.safe_load((API_KEY_COMPONENT / "kustomization.yaml").read_text(encoding="utf-8"))
    rendered = resources
    for patch in component["patches"]:
        operations = yaml.safe_load((API_KEY_COMPONENT / patch["path"]).read_text(encoding="utf-8"))
        target = patch["target"]
        rendered = [apply_json6902(resource, operations)
                    if resource["kind"] == target["kind"] and resource["metadata"]["name"] == target["name"]
                    else resource for resource in rendered]
    return rendered


def kustomize(folder: Path) -> list[dict] | None:
    """``kubectl kustomize folder`` when kubectl is installed (it embeds kustomize), else None."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {folder} failed: {result.stderr.strip()}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def validate_kubernetes(resource: dict, where: str, versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> None:
    for version in versions:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path)) or "(top level)"
            raise ManifestError(f"{where}: {resource.get('kind')} {resource.get('metadata', {}).get('name')}: "
                                f"{path}: {error.message} (Kubernetes {version})") from None
        except (kubernetes_validate.SchemaNotFoundError, KeyError) as error:
            raise ManifestError(f"{where}: no Kubernetes schema for {resource.get('apiVersion')} "
                                f"{resource.get('kind')} ({error})") from None


def podspec_fields(version: str = KUBERNETES_VERSIONS[-1]) -> set[str]:
    schema = schema_contents(f"kubernetes-json-schema/v{version}-local-strict/podspec-v1.json", version)
    return set(schema["properties"])


def validate_inference_service(path: Path = INFERENCE_SERVICE) -> dict:
    """The InferenceService at ``path``, validated; returns it."""
    (service,) = load_all(path)
    schema = json.loads(INFERENCE_SERVICE_SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(service), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        raise ManifestError(f"{path}: {'.'.join(map(str, error.path)) or '(top level)'}: {error.message}")
    predictor = service["spec"]["predictor"]
    predictor_schema = schema["$defs"]["predictor"]
    extension, implementations = set(predictor_schema["properties"]) - {"containers"}, \
        set(predictor_schema["x-implementations"])
    pod_fields = podspec_fields()
    unknown = sorted(set(predictor) - extension - implementations - pod_fields)
    if unknown:
        raise ManifestError(f"{path}: spec.predictor has fields that KServe's PredictorSpec does not: "
                            f"{', '.join(unknown)}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": service["metadata"]["name"]},
           "spec": {key: value for key, value in predictor.items() if key in pod_fields}}
    validate_kubernetes(pod, f"{path} (spec.predictor as a PodSpec)")
    return service


def validate_all(log=print) -> None:
    """Everything in deploy/; ManifestError at the first problem."""
    base = base_resources()
    rendered = kustomize(K8S)
    if rendered is not None:
        names = sorted((r["kind"], r["metadata"]["name"]) for r in rendered)
        if names != sorted((r["kind"], r["metadata"]["name"]) for r in base):
            raise ManifestError(f"kubectl kustomize {K8S} renders {names}, not the files the base lists")
    renderings = {
        "deploy/k8s": rendered or base,
        "deploy/k8s + components/api-key": with_api_key_component(rendered or base),
    }
    overlay = kustomize(OVERLAY)
    if overlay is not None:
        renderings["deploy/overlays/production"] = overlay
    for name, resources in renderings.items():
        for resource in resources:
            validate_kubernetes(resource, name)
        log(f"{name}: {len(resources)} resources valid against the Kubernetes {' and '.join(KUBERNETES_VERSIONS)} "
            f"schemas (strict){'' if rendered is not None else ', read without kustomize (kubectl not installed)'}")
    validate_inference_service()
    log(f"{INFERENCE_SERVICE.relative_to(DEPLOY.parent)}: valid against {INFERENCE_SERVICE_SCHEMA.name} and the "
        "Kubernetes PodSpec schema (strict)")


if __name__ == "__main__":
    try:
        validate_all()
    except ManifestError as failure:
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(1)
