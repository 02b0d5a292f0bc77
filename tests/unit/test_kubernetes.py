"""The Kubernetes files in deploy/kubernetes, checked by parsing (no cluster runs in CI): the
sidecar is a Deployment of replicas behind a headless Service that clients balance over, its
probes use gRPC health, its environment names real config keys, and the Milvus Helm values
ask for cluster mode at the version the compose file pins."""

from __future__ import annotations

from pathlib import Path

import yaml

from mmsearch.app.config import load_config

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
DOCS = {d["kind"]: d for d in yaml.safe_load_all((KUBE / "sidecar.yaml").read_text())}
VALUES = yaml.safe_load((KUBE / "milvus-values.yaml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def container() -> dict:
    (only,) = DOCS["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_replicas_behind_a_headless_service() -> None:
    deployment, service = DOCS["Deployment"], DOCS["Service"]
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["clusterIP"] == "None"  # DNS returns every pod: clients balance
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p for p in container()["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports
    assert ports["grpc"]["containerPort"] == 50051
    assert "0.0.0.0:50051" in container()["args"]
    budget = DOCS["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] >= 1 and budget["selector"]["matchLabels"].items() <= \
        labels.items()


def test_probes_use_grpc_health_on_the_serving_port() -> None:
    for probe in ("readinessProbe", "livenessProbe"):
        assert container()[probe]["grpc"]["port"] == 50051


def test_environment_names_real_config_keys(tmp_path: Path) -> None:
    environ = {e["name"]: e["value"] for e in container()["env"]}
    mount = next(m for m in container()["volumeMounts"] if m["name"] == "milvus-token")
    assert environ["MMSEARCH_MILVUS__TOKEN_FILE"].startswith(mount["mountPath"] + "/")
    token = tmp_path / "token"
    token.write_text("root:Milvus")
    environ["MMSEARCH_MILVUS__TOKEN_FILE"] = str(token)  # the secret's mount, here
    config = load_config(None, environ=environ)  # strict: an unknown key raises
    assert config.milvus.uri == "http://milvus:19530"
    assert config.server.metrics_port == 9102
    assert not any("TOKEN" in e["name"] and "FILE" not in e["name"] for e in container()["env"])


def test_image_is_pinned() -> None:
    image = container()["image"]
    assert ":" in image and not image.endswith(":latest")


def test_milvus_values_ask_for_cluster_mode_at_the_compose_version() -> None:
    assert VALUES["cluster"]["enabled"] is True
    compose_tag = COMPOSE["services"]["milvus"]["image"].split(":")[1]
    assert VALUES["image"]["all"]["tag"] == compose_tag
    assert VALUES["queryNode"]["replicas"] >= 2
    memory = VALUES["queryNode"]["resources"]
    assert memory["requests"]["memory"] == memory["limits"]["memory"]  # no overcommit
    user = yaml.safe_load(VALUES["extraConfigFiles"]["user.yaml"])
    assert "mmap" in user["queryNode"]
