"""Deployment files: Dockerfiles (hadolint + structure), docker-compose.yml, .env.example against the real
settings, the container entry point's argument/env mapping, and the Kubernetes manifests (kustomize
build + validation against the Kubernetes JSON schemas shipped by kubernetes-validate)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

BIN = Path(sys.executable).parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
K8S = ROOT / "deploy" / "k8s"


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.skip(f"{name} is not installed (it comes with `pip install -e .[dev]`)")
    return path


# --------------------------------------------------------------------------- Dockerfiles
def _instructions(path: Path) -> list[tuple[str, str]]:
    text = path.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_hadolint_clean(name):
    r = subprocess.run([_tool("hadolint"), str(ROOT / name)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_shellcheck_entrypoint():
    r = subprocess.run([_tool("shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_structure(name):
    ins = _instructions(ROOT / name)
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2 and " AS build" in froms[0] and " AS runtime" in froms[-1]  # multi-stage
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0  # non-root
    health = " ".join(rest for word, rest in final if word == "HEALTHCHECK")
    assert "/readyz" in health
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["/usr/local/bin/jinaserve-entrypoint"]
    assert any(word == "COPY" and "docker/entrypoint.sh /usr/local/bin/jinaserve-entrypoint" in rest
               for word, rest in final)
    assert ("EXPOSE", "8080") in final
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "HF_HOME=/models/hf" in env and "JINASERVE_HOST=0.0.0.0" in env
    assert any(word == "VOLUME" and "/models" in rest for word, rest in final)
    build = " ".join(rest for word, rest in ins if word == "RUN")
    if name == "Dockerfile":
        assert "download.pytorch.org/whl/cpu" in build  # CPU torch, never a CUDA build
        assert froms[0].startswith("python:${PYTHON_VERSION}-slim")
    else:
        args = " ".join(rest for word, rest in ins if word == "ARG")
        assert "download.pytorch.org/whl/cu" in args and '--index-url "${TORCH_INDEX}"' in build
        assert "JINASERVE_DEVICE=cuda" in env


# --------------------------------------------------------------------------- compose + .env
def _settings_fields() -> set[str]:
    from jinaserve.config import Settings

    return set(Settings.model_fields)


def _env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


COMPOSE_ONLY = {"JINASERVE_PUBLISH"}


def test_env_example_names_real_settings_and_loads(monkeypatch):
    from jinaserve.config import load_settings

    env = _env_example()
    fields = _settings_fields()
    unknown = [k for k in env if k.startswith("JINASERVE_") and k not in COMPOSE_ONLY
               and k.removeprefix("JINASERVE_").lower() not in fields]
    assert not unknown, f".env.example names settings that do not exist: {unknown}"
    for key in list(os.environ):
        if key.startswith("JINASERVE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert s.models == ["jina-embeddings-v3", "jina-reranker-v3"]
    assert (s.device, s.dtype, s.runtime, s.log_format) == ("auto", "auto", "torch", "json")
    assert s.quant is None and s.threads is None and s.api_keys == []  # empty values mean "unset"
    assert s.offline is False and s.max_queue_items == 8192 and s.graceful_timeout_s == 30
    monkeypatch.setenv("JINASERVE_API_KEYS", "k1, k2")
    monkeypatch.setenv("JINASERVE_OFFLINE", "1")
    monkeypatch.setenv("JINASERVE_QUANT", "Q8_0")
    s = load_settings()
    assert s.api_keys == ["k1", "k2"] and s.offline is True and s.quant == "Q8_0"


def test_compose_file():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"jinaserve", "jinaserve-cuda"} <= set(services)
    assert "models" in doc["volumes"]
    for name, svc in services.items():
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
        assert "models:/models" in svc["volumes"]
        assert svc["environment"]["HF_HOME"].startswith("/models/")
        assert any(e["path"] == ".env" for e in svc["env_file"])
        test = " ".join(svc["healthcheck"]["test"])
        assert "/readyz" in test and ":8080/" in test
        assert svc["environment"]["JINASERVE_PORT"] == "8080"
        assert any(str(p).endswith(":8080") for p in svc["ports"])
        assert svc["stop_signal"] == "SIGTERM"
        grace = int(str(svc["stop_grace_period"]).rstrip("s"))
        assert grace > 30, f"{name}: stop_grace_period must exceed the server's 30 s graceful timeout"
    gpu = services["jinaserve-cuda"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert services["jinaserve-cuda"]["profiles"] == ["cuda"]


# --------------------------------------------------------------------------- entry point
FAKE_BIN = """#!/usr/bin/env python3
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
      if k.startswith(("JINASERVE_", "HF_", "TRANSFORMERS_"))}}))
"""


def _entry(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake-jinaserve"
    fake.write_text(FAKE_BIN)
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("JINASERVE_", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))}
    full = {**base, "JINASERVE_BIN": str(fake), **(env or {})}
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=full, capture_output=True, text=True, timeout=30)


def _out(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_entrypoint_argument_mapping(tmp_path):
    assert _out(_entry(tmp_path))["argv"] == ["serve"]
    assert _out(_entry(tmp_path, "--models", "a,b"))["argv"] == ["serve", "--models", "a,b"]
    assert _out(_entry(tmp_path, "serve", "--port", "9000"))["argv"] == ["serve", "--port", "9000"]
    for cmd in ("models", "pull", "bundle", "embed", "rerank"):
        assert _out(_entry(tmp_path, cmd, "x"))["argv"] == [cmd, "x"]
    r = _entry(tmp_path, "echo", "plain command")
    assert r.returncode == 0 and r.stdout.strip() == "plain command"


def test_entrypoint_env_mapping(tmp_path):
    env = _out(_entry(tmp_path))["env"]
    assert env["JINASERVE_HOST"] == "0.0.0.0" and env["JINASERVE_PORT"] == "8080"
    assert "HF_HUB_OFFLINE" not in env
    env = _out(_entry(tmp_path, env={"JINASERVE_HOST": "127.0.0.1", "JINASERVE_PORT": "9999"}))["env"]
    assert env["JINASERVE_HOST"] == "127.0.0.1" and env["JINASERVE_PORT"] == "9999"
    for value in ("1", "true", "YES", "on"):
        env = _out(_entry(tmp_path, env={"JINASERVE_OFFLINE": value}))["env"]
        assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    env = _out(_entry(tmp_path, env={"JINASERVE_OFFLINE": "0"}))["env"]
    assert "HF_HUB_OFFLINE" not in env
    env = _out(_entry(tmp_path, env={"JINASERVE_BUNDLE": "/bundle"}))["env"]
    assert env["JINASERVE_OFFLINE"] == "1" and env["HF_HUB_OFFLINE"] == "1"

    keys = tmp_path / "keys"
    keys.write_text("# operators' keys\nsk-one\n\n  sk-two  \r\n")
    env = _out(_entry(tmp_path, env={"JINASERVE_API_KEYS_FILE": str(keys)}))["env"]
    assert env["JINASERVE_API_KEYS"] == "sk-one,sk-two"
    env = _out(_entry(tmp_path, env={"JINASERVE_API_KEYS_FILE": str(keys), "JINASERVE_API_KEYS": "sk-zero"}))["env"]
    assert env["JINASERVE_API_KEYS"] == "sk-zero,sk-one,sk-two"
    from jinaserve.config import Settings

    assert Settings(api_keys=env["JINASERVE_API_KEYS"]).api_keys == ["sk-zero", "sk-one", "sk-two"]
    r = _entry(tmp_path, env={"JINASERVE_API_KEYS_FILE": str(tmp_path / "missing")})
    assert r.returncode == 2 and "not readable" in r.stderr and r.stdout == ""


# --------------------------------------------------------------------------- Kubernetes
def _kustomize(overlay: str) -> list[dict]:
    r = subprocess.run([_tool("kubectl"), "kustomize", str(K8S / overlay)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def _by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("overlay", ["base", "overlays/cuda"])
def test_k8s_manifests_validate_against_schemas(overlay):
    import kubernetes_validate

    docs = _kustomize(overlay)
    assert {d["kind"] for d in docs} == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
                                         "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    # the validator does reject a broken manifest (so the loop above can fail)
    bad = copy.deepcopy(_by_kind(docs)["Deployment"])
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.37.0", strict=True)


def test_k8s_manifests_wire_together():
    docs = _by_kind(_kustomize("base"))
    dep, svc, pvc, hpa, cm = (docs[k] for k in ("Deployment", "Service", "PersistentVolumeClaim",
                                               "HorizontalPodAutoscaler", "ConfigMap"))
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert port["http"] == int(env["JINASERVE_PORT"]) == 8080 and env["JINASERVE_HOST"] == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["terminationGracePeriodSeconds"] > 30  # longer than the server's graceful drain
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert vols["models"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert env["HF_HOME"].startswith(mounts["models"] + "/")
    assert env["JINASERVE_API_KEYS_FILE"].startswith(mounts["api-keys"] + "/")
    assert c["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]
    fields = _settings_fields()
    assert all(k.startswith("JINASERVE_") and k.removeprefix("JINASERVE_").lower() in fields for k in cm["data"])
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 1 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    gpu = _by_kind(_kustomize("overlays/cuda"))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1 and gpu["image"] == "jinaserve:cuda"
    assert {"name": "JINASERVE_DEVICE", "value": "cuda"} in gpu["env"]
