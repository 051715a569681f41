"""The runtime image and the runtime path: no TensorFlow, no training package."""

import re

from tests.conftest import REPO_ROOT


def runtime_stage() -> str:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    return dockerfile.split("FROM python:3.11-slim AS runtime", 1)[1].split("\nFROM ", 1)[0]


def test_the_runtime_image_copies_the_artifacts_package_and_no_training_code():
    copied = [line.split()[1:-1] for line in runtime_stage().splitlines() if line.startswith("COPY ")]
    sources = [source for sources in copied for source in sources]
    assert "artifacts/" in sources and "service/" in sources
    assert not any(source.startswith("training") for source in sources), sources


def test_the_runtime_requirements_hold_no_training_or_distribution_packages():
    pinned = [line.split("==")[0].strip().lower() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "ray"} & set(pinned)
    assert all(re.fullmatch(r"[a-z0-9_.\[\]-]+==[0-9][0-9a-z.]*", line.split("#")[0].strip())
               for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")), "every runtime package is pinned"


def test_nothing_in_the_service_or_the_artifacts_package_imports_training():
    for folder in ("service", "artifacts"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            source = path.read_text()
            assert not re.search(r"^\s*(from|import)\s+(training|tensorflow|keras|tf2onnx)\b", source, re.M), path
