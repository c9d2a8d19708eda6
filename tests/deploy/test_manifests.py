"""infra/k8s is valid Kubernetes, offline, and hangs together: every file is applied, every
reference (ConfigMap, Secret, claim, HPA target, Service selector) finds its object."""

import copy
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .kustomize import K8S_DIR, SECRETS_EXAMPLE, SECRETS_FILE, Resource, load, pod_spec

# The oldest Kubernetes the manifests are meant for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())


def schema_errors(resources: list[Resource], version: str) -> list[str]:
    errors = []
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = "/".join(str(part) for part in err.path)
            errors.append(f"{resource['kind']}/{resource['metadata']['name']} {where}: {err}")
    return errors


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_matches_the_kubernetes_schema(version: str) -> None:
    manifests = load()
    errors = schema_errors(manifests.resources + manifests.generated(), version)
    assert not errors, "\n".join(errors)


def _misspell_probe_path(deployment: Any) -> None:
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")


def _replicas_as_words(deployment: Any) -> None:
    deployment["spec"]["replicas"] = "two"


@pytest.mark.parametrize("breakage", [_misspell_probe_path, _replicas_as_words])
def test_the_schema_check_rejects_a_broken_deployment(breakage: Callable[[Any], None]) -> None:
    deployment = copy.deepcopy(load().named("Deployment")["registry"])
    assert not schema_errors([deployment], KUBERNETES_VERSIONS[-1])
    breakage(deployment)
    assert schema_errors([deployment], KUBERNETES_VERSIONS[-1])


def test_every_manifest_file_is_listed_and_every_listed_file_exists() -> None:
    kustomization = load().kustomization
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for generator in kustomization["configMapGenerator"] + kustomization["secretGenerator"]:
        for item in generator.get("envs", []) + generator.get("files", []):
            path = item.rpartition("=")[2]
            expected = SECRETS_EXAMPLE if path == SECRETS_FILE else K8S_DIR / path
            assert expected.is_file(), f"{generator['name']}: {path} missing"


def test_secrets_env_is_kept_out_of_git() -> None:
    ignored = (K8S_DIR / ".gitignore").read_text().split()
    assert SECRETS_FILE in ignored


def _references(pod: Resource) -> list[tuple[str, str]]:
    found = []
    for container in pod["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                found.append(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                found.append(("Secret", source["secretRef"]["name"]))
        for item in container.get("env", []):
            ref = item.get("valueFrom", {})
            if "secretKeyRef" in ref:
                found.append(("Secret", ref["secretKeyRef"]["name"]))
            if "configMapKeyRef" in ref:
                found.append(("ConfigMap", ref["configMapKeyRef"]["name"]))
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            found.append(("ConfigMap", volume["configMap"]["name"]))
        if "persistentVolumeClaim" in volume:
            found.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    return found


def test_every_reference_finds_its_object() -> None:
    manifests = load()
    known = {
        "ConfigMap": set(manifests.configmaps) | set(manifests.named("ConfigMap")),
        "Secret": set(manifests.secrets) | set(manifests.named("Secret")),
        "PersistentVolumeClaim": set(manifests.named("PersistentVolumeClaim")),
    }
    for name, deployment in manifests.named("Deployment").items():
        for kind, target in _references(pod_spec(deployment)):
            assert target in known[kind], f"Deployment {name} refers to missing {kind} {target}"


def test_every_generated_configmap_and_secret_is_used() -> None:
    manifests = load()
    used = {
        target
        for deployment in manifests.named("Deployment").values()
        for _, target in _references(pod_spec(deployment))
    }
    assert set(manifests.configmaps) | set(manifests.secrets) <= used


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_services_and_disruption_budgets_select_one_deployment() -> None:
    manifests = load()
    deployments = manifests.named("Deployment")
    selectors = [
        ("Service", n, s["spec"]["selector"]) for n, s in manifests.named("Service").items()
    ]
    selectors += [
        ("PodDisruptionBudget", n, b["spec"]["selector"]["matchLabels"])
        for n, b in manifests.named("PodDisruptionBudget").items()
    ]
    for kind, name, selector in selectors:
        matched = [
            d
            for d, spec in deployments.items()
            if _selects(selector, spec["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matched) == 1, f"{kind} {name} selects {matched}"
    for name, deployment in deployments.items():
        assert _selects(
            deployment["spec"]["selector"]["matchLabels"],
            deployment["spec"]["template"]["metadata"]["labels"],
        ), f"Deployment {name}: its selector misses its own pods"


def test_service_ports_target_a_container_port() -> None:
    manifests = load()
    for name, service in manifests.named("Service").items():
        pod = pod_spec(manifests.named("Deployment")[name])
        container_ports = {
            key: port
            for container in pod["containers"]
            for port in container.get("ports", [])
            for key in (port.get("name"), port["containerPort"])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"Service {name}: {port}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_and_the_output_is_valid(tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, tree, ignore=shutil.ignore_patterns(SECRETS_FILE))
    shutil.copy(SECRETS_EXAMPLE, tree / SECRETS_FILE)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(tree)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    errors = schema_errors(documents, KUBERNETES_VERSIONS[-1])
    assert not errors, "\n".join(errors)
    namespaced = [d for d in documents if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"edgecloud"}
    # Generated names carry a content hash, and every reference was rewritten to it.
    generated = {d["metadata"]["name"] for d in documents if d["kind"] in ("ConfigMap", "Secret")}
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        for kind, target in _references(pod_spec(deployment)):
            if kind != "PersistentVolumeClaim":
                assert target in generated, f"{deployment['metadata']['name']}: {target}"
