"""The production compose stack, checked by parsing (no Docker engine runs in CI): pinned
images or builds, healthchecks, depends_on conditions, named volumes, ports on 127.0.0.1
only, no secrets in the file, and every MMSEARCH_* variable is a real config key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmsearch.app.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_has_every_part() -> None:
    assert {"etcd", "minio", "milvus", "worker", "sidecar", "prometheus", "attu"} <= set(SERVICES)
    assert SERVICES["milvus"]["image"].startswith("milvusdb/milvus:v2.6.")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_is_pinned_healthchecked_and_private(name: str) -> None:
    service = SERVICES[name]
    image = service.get("image", "")
    assert "build" in service or image == "mmsearch:local" or re.search(
        r":(v?\d[\w.\-]*|RELEASE\.[\w\-]+)$", image), f"{name}: image {image!r} not pinned"
    assert not image.endswith(":latest")
    assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    for port in service.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not on 127.0.0.1"
    for dependency, condition in service.get("depends_on", {}).items():
        assert dependency in SERVICES
        assert condition["condition"] in ("service_healthy", "service_started")
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        assert source.startswith("./") or source in COMPOSE["volumes"], volume


def test_mmsearch_image_is_built_and_shared() -> None:
    assert SERVICES["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert SERVICES["sidecar"]["image"] == SERVICES["worker"]["image"] == "mmsearch:local"
    dockerfile = (ROOT / SERVICES["worker"]["build"]["dockerfile"]).read_text()
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert "torch" not in runtime.replace("no torch", "")  # no torch at run time
    assert "[cpu]" in runtime and "ENV MMSEARCH_MILVUS_TOKEN" not in dockerfile


def test_no_secret_values_in_the_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)[A-Z_]*:\s*\S", text.replace(
        "TOKEN_FILE: /run/secrets/milvus_token", ""))
    assert COMPOSE["secrets"]["milvus_token"]["file"] == "deploy/milvus_token"
    assert (ROOT / "deploy/stack.env.example").is_file()
    ignored = (ROOT / ".gitignore").read_text()
    assert "deploy/stack.env" in ignored and "deploy/milvus_token" in ignored


@pytest.mark.parametrize("name", ["worker", "sidecar"])
def test_environment_names_real_config_keys(name: str, tmp_path: Path) -> None:
    environ = {k: str(v) for k, v in SERVICES[name]["environment"].items()}
    token = tmp_path / "token"
    token.write_text("root:Milvus")
    environ["MMSEARCH_MILVUS__TOKEN_FILE"] = str(token)  # the secret's mount, here
    config = load_config(None, environ=environ)  # strict: an unknown key raises
    assert config.milvus.uri == "http://milvus:19530" and config.milvus.token == "root:Milvus"
    assert config.state_dir == "/state"
    if name == "sidecar":
        assert config.server.metrics_port == 9102


def test_prometheus_scrapes_both_metric_ports() -> None:
    scrape = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for s in job.get("static_configs", [])
               for t in s["targets"]}
    assert "worker:9101" in targets and "9101" in SERVICES["worker"]["command"]
    sidecar = next(j for j in scrape["scrape_configs"] if j["job_name"] == "mmsearch-sidecar")
    discovered = sidecar["dns_sd_configs"][0]  # every replica, not the first to answer
    assert discovered["names"] == ["sidecar"] and discovered["port"] == 9102


def test_sidecar_replicas_each_get_a_host_port() -> None:
    sidecar = SERVICES["sidecar"]
    replicas = sidecar["deploy"]["replicas"]
    assert replicas >= 2
    (port,) = sidecar["ports"]
    host, container = port.rsplit(":", 1)
    first, last = (int(p) for p in host.split(":")[1].split("-"))
    assert last - first + 1 == replicas and container == "50051"
    assert "0.0.0.0:50051" in sidecar["command"]


def test_serving_path_imports_without_torch(tiny_model: tuple[Path, Path]) -> None:
    """The runtime image has no torch: the ONNX encoder, the scorer runtime, the sidecar and
    the worker must load without it."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from encoders import load_encoder\n"
        "import rerank.server, mmsearch.app.wiring, plugin.worker, mmsearch.app.commands.ingest\n"
        "from rerank.scorer import OnnxScorer\n"
        f"e = load_encoder('onnx', export_dir={str(tiny_model[1])!r})\n"
        "print(e.encode_texts(['a cat']).at_width(e.config.width_max).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
