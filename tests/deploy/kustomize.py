"""infra/k8s read the way kustomize reads it: the listed resources, plus the ConfigMaps and
the Secret its generators make (the Secret's keys from secrets.env.example, since the real
secrets.env is never in git)."""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .repo import ROOT

K8S_DIR = ROOT / "infra" / "k8s"
SECRETS_EXAMPLE = K8S_DIR / "secrets.env.example"
# The generators read secrets.env; its committed stand-in lists the same keys.
SECRETS_FILE = "secrets.env"

Resource = dict[str, Any]


def read_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """``KEY=value`` lines as kustomize reads them; ``commented`` also takes ``# KEY=value``."""
    values = {}
    pattern = r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$" if commented else r"^()([A-Za-z_]\w*)=(.*)$"
    for line in path.read_text().splitlines():
        found = re.match(pattern, line.strip())
        if found:
            values[found.group(2)] = found.group(3)
    return values


@dataclass
class Manifests:
    kustomization: Resource
    resources: list[Resource]
    """The documents of the files under ``resources``, as written."""
    configmaps: dict[str, dict[str, str]]
    """Generated ConfigMaps by name: their data."""
    secrets: dict[str, dict[str, str]]
    """Generated Secrets by name: every key they may hold, with its example value."""
    optional_secret_keys: frozenset[str]
    """Keys secrets.env.example lists commented out: only some installations set them."""

    def named(self, kind: str) -> dict[str, Resource]:
        return {r["metadata"]["name"]: r for r in self.resources if r["kind"] == kind}

    def generated(self) -> list[Resource]:
        """The ConfigMaps and Secrets the generators make, as kustomize would emit them."""
        made: list[Resource] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
            for name, data in self.configmaps.items()
        ]
        made += [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name},
                "stringData": data,
            }
            for name, data in self.secrets.items()
        ]
        return made


def _generated_data(generator: Resource, *, secret: bool) -> dict[str, str]:
    data: dict[str, str] = {}
    for env_file in generator.get("envs", []):
        if secret and env_file == SECRETS_FILE:
            data.update(read_env_file(SECRETS_EXAMPLE, commented=True))
        else:
            data.update(read_env_file(K8S_DIR / env_file))
    for item in generator.get("files", []):
        key, _, path = item.rpartition("=")
        data[key or Path(path).name] = (K8S_DIR / path).read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return data


@cache
def load() -> Manifests:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    resources = [
        document
        for path in kustomization["resources"]
        for document in yaml.safe_load_all((K8S_DIR / path).read_text())
        if document
    ]
    configmaps = {
        g["name"]: _generated_data(g, secret=False)
        for g in kustomization.get("configMapGenerator", [])
    }
    secrets = {
        g["name"]: _generated_data(g, secret=True) for g in kustomization.get("secretGenerator", [])
    }
    active = read_env_file(SECRETS_EXAMPLE)
    optional = frozenset(read_env_file(SECRETS_EXAMPLE, commented=True)) - frozenset(active)
    return Manifests(kustomization, resources, configmaps, secrets, optional)


def pod_spec(workload: Resource) -> Resource:
    spec: Resource = workload["spec"]["template"]["spec"]
    return spec


def container_env(
    container: Resource, manifests: Manifests, secret_values: dict[str, str]
) -> dict[str, str]:
    """The variables a container gets from its ConfigMaps, Secrets and literal values.

    ``secret_values`` stands in for the Secret's real contents; an optional secret key it
    lacks is left out, as Kubernetes would.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(manifests.configmaps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            keys = manifests.secrets[source["secretRef"]["name"]]
            env.update({key: secret_values[key] for key in keys if key in secret_values})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            key = ref["secretKeyRef"]["key"]
            assert key in manifests.secrets[ref["secretKeyRef"]["name"]], key
            if key in secret_values:
                env[item["name"]] = secret_values[key]
            else:
                assert ref["secretKeyRef"].get("optional"), f"{key} is not optional"
        elif "configMapKeyRef" in ref:
            configmap = ref["configMapKeyRef"]
            env[item["name"]] = manifests.configmaps[configmap["name"]][configmap["key"]]
    return env
