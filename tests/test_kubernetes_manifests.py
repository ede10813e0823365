"""deploy/kubernetes/ against the Kubernetes and KEDA schemas, offline, and against bgworkers.

Schemas, no network: Kubernetes' own kinds are checked by ``kubernetes-validate`` (the API's
JSON schemas, shipped in the package, strict: unknown fields are errors, as ``kubectl
--validate=strict`` does); KEDA's ``ScaledObject`` and ``TriggerAuthentication`` against JSON
schemas derived here from ``cloudcoil-models-keda`` (pydantic models generated from KEDA's
CRDs), made strict the same way. Then what the schemas cannot know: the probes hit the
endpoints bgworkers serves, the grace period outlasts the worker shutdown timeout, the
scheduler runs twice, KEDA counts the right queues including unacknowledged messages, every
reference (ConfigMap, Secret, Deployment, TriggerAuthentication) resolves, and every ``BGW_``
variable is a setting.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

from bgworkers import queues
from bgworkers.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
KEDA_MODELS = {
    "ScaledObject": keda.ScaledObject,
    "TriggerAuthentication": keda.TriggerAuthentication,
}
#: Parameters of KEDA's rabbitmq scaler (keda.sh docs, scalers/rabbitmq-queue): its metadata is
#: a free-form map in the CRD, so a misspelt key would pass the schema and be ignored by KEDA.
RABBITMQ_TRIGGER_KEYS = {
    "host", "hostFromEnv", "protocol", "mode", "value", "activationValue", "queueName",
    "vhostName", "useRegex", "excludeUnacknowledged", "pageSize", "operation", "timeout",
    "unsafeSsl", "usernameFromEnv", "passwordFromEnv",
}  # fmt: skip


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


DOCS = documents()


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in DOCS if d["kind"] == kind}


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists properties."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def keda_schema(kind: str) -> dict[str, Any]:
    return strict(KEDA_MODELS[kind].model_json_schema(by_alias=True, mode="validation"))


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[f"{n}:{d['kind']}" for n, d in DOCS])
def test_each_manifest_fits_its_schema(name: str, doc: dict[str, Any]) -> None:
    if doc["kind"] in KEDA_MODELS:
        jsonschema.validate(doc, keda_schema(doc["kind"]))
        KEDA_MODELS[doc["kind"]].model_validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schemas_do_refuse_mistakes() -> None:
    # A check that accepts anything proves nothing: a typo in each family is caught.
    scaled = by_kind("ScaledObject")["bgworkers-worker"]
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["minReplicaCuont"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, keda_schema("ScaledObject"))
    worker = copy.deepcopy(by_kind("Deployment")["bgworkers-worker"])
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 90
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)
    worker = copy.deepcopy(by_kind("Deployment")["bgworkers-worker"])
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def container(deployment: str) -> dict[str, Any]:
    [only] = by_kind("Deployment")[deployment]["spec"]["template"]["spec"]["containers"]
    return only


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def config() -> dict[str, str]:
    return by_kind("ConfigMap")["bgworkers-config"]["data"]


WORKERS = ("bgworkers-worker", "bgworkers-worker-urgent")


@pytest.mark.parametrize("deployment", WORKERS)
def test_worker_probes_and_grace_period(deployment: str) -> None:
    worker = container(deployment)
    assert worker["command"][:2] == ["dramatiq", "bgworkers"]
    shutdown_s = int(option(worker["command"], "--worker-shutdown-timeout")) / 1000
    pod = by_kind("Deployment")[deployment]["spec"]["template"]["spec"]
    # Past the shutdown timeout SIGKILL would cut running messages short.
    assert pod["terminationGracePeriodSeconds"] >= shutdown_s + 15
    port = {p["name"]: p["containerPort"] for p in worker["ports"]}["metrics"]
    assert port == int(config()["BGW_METRICS_PORT"])
    assert config()["BGW_METRICS_HOST"] == "0.0.0.0"  # reachable by the kubelet
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def consumed_queues(deployment: str) -> list[str]:
    """The queues after ``--queues`` (the option is greedy: it is last in the command)."""
    command = container(deployment)["command"]
    return command[command.index("--queues") + 1 :]


def test_each_lane_has_its_own_workers_and_every_queue_one_lane() -> None:
    urgent = consumed_queues("bgworkers-worker-urgent")
    bulk = consumed_queues("bgworkers-worker")
    assert sorted(urgent) == sorted(queues.TIME_CRITICAL)
    assert not set(urgent) & set(bulk)
    assert sorted(urgent + bulk) == sorted(queues.ALL)
    assert by_kind("Deployment")["bgworkers-worker-urgent"]["spec"]["replicas"] >= 2


def test_two_schedulers_on_their_own_port() -> None:
    deployment = by_kind("Deployment")["bgworkers-scheduler"]
    assert deployment["spec"]["replicas"] == 2  # ticks are claimed once: no double runs
    scheduler = container("bgworkers-scheduler")
    assert scheduler["command"] == ["periodiq", "bgworkers"]
    port = {p["name"]: p["containerPort"] for p in scheduler["ports"]}["metrics"]
    assert port == int(config()["BGW_SCHEDULER_METRICS_PORT"])
    assert scheduler["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert scheduler["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_keda_scales_each_lane_on_its_own_queues_counting_unacknowledged() -> None:
    scaled_objects = by_kind("ScaledObject").values()
    assert sorted(o["spec"]["scaleTargetRef"]["name"] for o in scaled_objects) == sorted(WORKERS)
    for scaled in scaled_objects:
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert scaled["spec"]["minReplicaCount"] >= 1  # the outbox relay runs in the workers
        [trigger] = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "rabbitmq"
        assert set(meta) <= RABBITMQ_TRIGGER_KEYS, set(meta) - RABBITMQ_TRIGGER_KEYS
        assert (meta["protocol"], meta["mode"]) == ("http", "QueueLength")
        assert meta["excludeUnacknowledged"] == "false"  # ready + unacked
        assert meta["useRegex"] == "true" and meta["operation"] == "sum"
        pattern = re.compile(meta["queueName"])
        # Scaled on exactly the queues its pods consume: no more, no fewer.
        assert [q for q in queues.ALL if pattern.fullmatch(q)] == [
            q for q in queues.ALL if q in consumed_queues(target)
        ], target
        for queue in queues.ALL:
            assert not pattern.fullmatch(f"{queue}.DQ") and not pattern.fullmatch(f"{queue}.XQ")
        int(meta["value"])
        auth = by_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
        [ref] = auth["spec"]["secretTargetRef"]
        assert ref["parameter"] == "host"
        assert ref["key"] in by_kind("Secret")[ref["name"]]["stringData"]
        vhost = by_kind("Secret")[ref["name"]]["stringData"]["host"].rsplit("/", 1)[1]
        assert vhost == meta["vhostName"]
    urgent = by_kind("ScaledObject")["bgworkers-worker-urgent"]["spec"]
    assert urgent["minReplicaCount"] >= 2  # the lane stays served while a pod restarts


def test_references_resolve_and_every_variable_is_a_setting() -> None:
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    pods = [d["spec"]["template"]["spec"] for _, d in DOCS if d["kind"] in ("Deployment", "Job")]
    for pod in pods:
        for item in pod["containers"]:
            for source in item["envFrom"]:
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                else:
                    assert source["secretRef"]["name"] in secrets
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in by_kind(
                    "PersistentVolumeClaim"
                )
    variables = {**config(), **secrets["bgworkers-secrets"]["stringData"]}
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in variables if k.startswith(ENV_PREFIX)} - fields
    assert not unknown, unknown
    assert config()["BGW_QUEUE_TYPE"] == "quorum"
    settings = Settings(
        **{
            name.removeprefix(ENV_PREFIX).lower(): value
            for name, value in variables.items()
            if name.startswith(ENV_PREFIX)
        }
    )
    assert len(settings.broker_url.get_secret_value().split(";")) == 3  # the cluster's nodes


def test_scaling_md_sizes_max_connections_for_these_manifests() -> None:
    """The worked example of docs/scaling.md ("PostgreSQL connections"), recomputed from the
    manifests and the pool sizes: a change to either that the doc does not follow fails."""
    from bgworkers.db.engine import POOL_MAX_OVERFLOW, POOL_SIZE

    doc = (ROOT / "docs" / "scaling.md").read_text()
    pool = POOL_SIZE + POOL_MAX_OVERFLOW
    deployments, scaled = by_kind("Deployment"), by_kind("ScaledObject")
    total = total_at_max = 0
    for name in WORKERS:
        command = container(name)["command"]
        processes, threads = int(option(command, "--processes")), int(option(command, "--threads"))
        replicas = deployments[name]["spec"]["replicas"]
        most = scaled[name]["spec"]["maxReplicaCount"]
        per_pod = processes * (pool + threads) + 1
        times = "\N{MULTIPLICATION SIGN}"  # the doc's sign
        row = (
            f"| `{name}`: {replicas} pods of {processes} {times} {threads} (KEDA: up to {most}) | "
            f"{processes} {times} ({pool} + {threads}) + 1 = {per_pod} | "
            f"{replicas * per_pod} ({most * per_pod} at {most} pods) |"
        )
        assert row in doc, row
        total += replicas * per_pod
        total_at_max += most * per_pod
    schedulers = deployments["bgworkers-scheduler"]["spec"]["replicas"]
    consoles = deployments["bgworkers-console"]["spec"]["replicas"]
    assert f"| `bgworkers-scheduler`: {schedulers} pods | 1 | {schedulers} |" in doc
    assert f"| `bgworkers-console`: {consoles} pod | {pool} | {consoles * pool} |" in doc
    others = schedulers + consoles * pool + 1 + 3  # the migration Job, superuser_reserved
    total, total_at_max = total + others, total_at_max + others
    assert f"| **total** | | **{total} ({total_at_max} at KEDA's maxima)** |" in doc
