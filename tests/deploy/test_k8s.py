"""The Kubernetes manifests in deploy/k8s: valid against the Kubernetes API schemas (offline,
kubernetes-validate ships them), and consistent with the image and the service they run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service.server import DRAIN_S

kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OLDEST = "1.30.0"   # the oldest release the manifests target (autoscaling/v2, policy/v1 and all fields used)


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                docs[doc["kind"]] = doc
    return docs


def api_container() -> dict:
    (c,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.mark.parametrize("version", [OLDEST, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_each_manifest_is_valid_against_the_kubernetes_schemas(path, version):
    for doc in yaml.safe_load_all((K8S / path).read_text()):
        kubernetes_validate.validate(doc, version, strict=True)   # strict: unknown fields are errors


def test_the_validator_rejects_a_misspelt_field_and_a_wrong_type():
    """Guards against a validator that silently passes everything."""
    for field, value in (("replicaz", 2), ("replicas", "two")):
        doc = yaml.safe_load((K8S / "deployment.yaml").read_text())
        doc["spec"][field] = value
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, OLDEST, strict=True)


def test_kustomization_lists_every_manifest_and_names_the_image():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == on_disk
    assert {i["name"] for i in k["images"]} == {api_container()["image"]}


def test_selectors_ports_and_scrape_annotations_agree():
    m = manifests()
    deployment, pod = m["Deployment"], m["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert m["Service"]["spec"]["selector"].items() <= labels.items()
    assert m["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = m["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert m["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2   # so the PDB can let one go

    ports = {p["name"]: p["containerPort"] for p in api_container()["ports"]}
    (service_port,) = m["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in ports
    exposed = re.search(r"^EXPOSE (\d+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == exposed == str(ports["http"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes_use_the_services_health_routes():
    from service.routes.ops import router

    routes = {r.path for r in router.routes}
    c = api_container()
    assert c["readinessProbe"]["httpGet"]["path"] == c["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= routes


def test_threads_fill_the_cpu_limit_without_oversubscribing_it():
    c = api_container()
    e = env(c)
    cpus = float(c["resources"]["limits"]["cpu"])
    assert int(e["SER_WORKERS"]) * int(e["SER_INTRA_OP_THREADS"]) * int(e["SER_MAX_CONCURRENCY"]) == int(e["SER_WORKERS"]) == cpus
    assert e["SER_INTER_OP_THREADS"] == e["OMP_NUM_THREADS"] == "1"
    assert c["resources"]["requests"]["cpu"] == c["resources"]["limits"]["cpu"]


def test_termination_grace_lets_the_prestop_sleep_and_the_drain_finish():
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    command = api_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + DRAIN_S + 5


def test_pod_runs_as_the_images_non_root_user_on_a_read_only_root():
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)", (REPO / "Dockerfile").read_text(), re.M)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == tuple(map(int, user.groups()))
    sc = api_container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {v["mountPath"]: v["name"] for v in api_container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]   # uploads spool to /tmp


def test_the_api_key_comes_from_a_secret():
    (key,) = [e for e in api_container()["env"] if e["name"] == "SER_API_KEY"]
    assert set(key) == {"name", "valueFrom"} and key["valueFrom"]["secretKeyRef"]["name"] == "ser-api-key"


def test_tmp_holds_the_upload_budget():
    (tmp,) = manifests()["Deployment"]["spec"]["template"]["spec"]["volumes"]
    mi = int(re.fullmatch(r"(\d+)Mi", tmp["emptyDir"]["sizeLimit"]).group(1))
    e = env(api_container())
    assert mi * 1024**2 >= int(e["SER_WORKERS"]) * int(e["SER_MAX_INFLIGHT_BYTES"])


def test_only_the_ingress_and_prometheus_reach_the_pods():
    m = manifests()
    policy, pod = m["NetworkPolicy"]["spec"], m["Deployment"]["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    (rule,) = policy["ingress"]
    sources = {(p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]) for p in rule["from"]}
    assert sources == {("ingress-nginx", "ingress-nginx"), ("monitoring", "prometheus")}
    assert [p["port"] for p in rule["ports"]] == ["http"] == [p["name"] for p in api_container()["ports"]]
