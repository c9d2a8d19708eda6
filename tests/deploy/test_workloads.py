"""The workloads in infra/k8s: one Deployment and Service per cloud process, enough replicas
where it matters, autoscalers on real targets, hardened pods with bounded resources."""

import pytest

from .kustomize import Resource, container_env, load, pod_spec
from .repo import cloud_processes, processes

REPLICATED = ("gateway", "registry", "orchestrator")
AUTOSCALED = ("registry", "orchestrator")


def deployments() -> dict[str, Resource]:
    return load().named("Deployment")


def autoscalers() -> dict[str, Resource]:
    return {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in load().named("HorizontalPodAutoscaler").values()
    }


def test_every_cloud_process_has_a_deployment_and_a_service() -> None:
    assert set(deployments()) == set(cloud_processes())
    assert set(load().named("Service")) == set(cloud_processes())
    assert "agent" in processes()
    assert "agent" not in deployments(), "the agent runs on the edge nodes, not in the cluster"


@pytest.mark.parametrize("process", sorted(cloud_processes()))
def test_the_deployment_runs_the_process_s_image(process: str) -> None:
    (container,) = pod_spec(deployments()[process])["containers"]
    assert container["name"] == process
    assert container["image"] == f"edgecloud/{process}"
    assert f"edgecloud/{process}" in {image["name"] for image in load().kustomization["images"]}


def test_the_busy_services_run_at_least_two_replicas() -> None:
    for name in REPLICATED:
        deployment = deployments()[name]
        scaler = autoscalers().get(name)
        least = scaler["spec"]["minReplicas"] if scaler else deployment["spec"].get("replicas", 1)
        assert least >= 2, f"{name} may run a single replica"


def test_autoscalers_target_existing_deployments_that_they_alone_size() -> None:
    assert set(AUTOSCALED) <= set(autoscalers())
    for hpa in load().named("HorizontalPodAutoscaler").values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] in deployments(), f"HPA {hpa['metadata']['name']}: no target"
        deployment = deployments()[target["name"]]
        # kubectl apply would reset whatever the autoscaler chose.
        assert "replicas" not in deployment["spec"], f"{target['name']}: drop spec.replicas"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        resources = {
            metric["resource"]["name"]
            for metric in hpa["spec"]["metrics"]
            if metric["type"] == "Resource"
        }
        for container in pod_spec(deployment)["containers"]:
            for resource in resources:
                assert resource in container["resources"]["requests"], (
                    f"{target['name']}: utilisation of {resource} needs a request"
                )


@pytest.mark.parametrize("process", sorted(cloud_processes()))
def test_the_pod_is_hardened(process: str) -> None:
    pod = pod_spec(deployments()[process])
    assert pod["automountServiceAccountToken"] is False
    # Service links would hand e.g. REGISTRY_PORT=tcp://10.0.0.1:8001 to the settings.
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "add" not in context["capabilities"]
        assert context["readOnlyRootFilesystem"] is True
        assert context.get("privileged") is not True
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{process} {kind}"


@pytest.mark.parametrize("process", sorted(cloud_processes()))
def test_the_pod_has_readiness_and_liveness_probes(process: str) -> None:
    (container,) = pod_spec(deployments()[process])["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "httpGet" in container[probe], f"{process}: {probe} is not an HTTP probe"
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    # Liveness restarts the pod: it must give up later than readiness stops traffic.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > (
        readiness["periodSeconds"] * readiness["failureThreshold"]
    )


def test_storage_keeps_its_blobs_on_the_claim() -> None:
    pod = pod_spec(deployments()["storage"])
    (container,) = pod["containers"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert set(claims.values()) <= set(load().named("PersistentVolumeClaim"))
    mounted = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
    env = container_env(container, load(), load().secrets["edgecloud-secrets"])
    if env.get("STORAGE_BACKEND", "filesystem") == "filesystem":
        data_dir = env["STORAGE_DATA_DIR"]
        assert any(data_dir.startswith(path.rstrip("/") + "/") for path in mounted), data_dir
        claim = load().named("PersistentVolumeClaim")[next(iter(claims.values()))]
        if "ReadWriteOnce" in claim["spec"]["accessModes"]:
            assert deployments()["storage"]["spec"]["replicas"] == 1
            assert deployments()["storage"]["spec"]["strategy"]["type"] == "Recreate"


def test_the_router_runs_alone() -> None:
    """Two routers without router-to-router links would not share the realm."""
    router = deployments()["router"]["spec"]
    assert router["replicas"] == 1
    assert router["strategy"]["type"] == "Recreate"
    assert "router" not in autoscalers()


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (namespace,) = load().named("Namespace").values()
    assert namespace["metadata"]["name"] == load().kustomization["namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
