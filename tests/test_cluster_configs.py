"""Cluster configs (cluster/): launcher YAMLs against Ray's autoscaler schema, KubeRay / MLflow manifests, the
CLI arguments they pass, and cluster/local.sh (syntax always; a real up/down cycle as a slow test)."""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator.config import REPO_ROOT, ConfigError, load_config
from orchestrator.pretrain.config import PretrainConfig

CLUSTER = REPO_ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER_YAMLS = [CLUSTER / "aws.yaml", CLUSTER / "gcp.yaml"]
RAY_IMAGE_RE = re.compile(r"^rayproject/ray:(?P<ver>\d+\.\d+\.\d+)-py311-(cpu|gpu)$")


def _docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path}: empty"
    return docs


def _by_kind(path: Path, kind: str) -> list[dict]:
    return [d for d in _docs(path) if d.get("kind") == kind]


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


# ---------------------------------------------------------------------------------------------- launcher YAMLs
@pytest.fixture(scope="module")
def ray_schema() -> dict:
    path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    assert path.is_file(), f"ray-schema.json not shipped at {path}"
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda p: p.name)
def test_launcher_yaml_validates_against_ray_schema(path, ray_schema):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed in the venv")
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, ray_schema)
    # what `ray up` does: merge the provider defaults, then Ray's own validation (schema + cross-field checks)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda p: p.name)
def test_launcher_yaml_shape(path):
    c = yaml.safe_load(path.read_text())
    types = c["available_node_types"]
    head = types[c["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must advertise CPU: 0 so no training lands on it"
    workers = {k: v for k, v in types.items() if k != c["head_node_type"]}
    assert "gpu_worker" in workers
    gpu = workers["gpu_worker"]
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= c["max_workers"]
    nc = gpu["node_config"]
    if c["provider"]["type"] == "aws":
        assert nc["InstanceMarketOptions"]["MarketType"] == "spot"
    else:
        assert c["provider"]["type"] == "gcp"
        assert nc["scheduling"]["preemptible"] is True
        assert nc["scheduling"]["onHostMaintenance"] == "TERMINATE"
        assert nc["guestAccelerators"][0]["acceleratorCount"] >= 1
    # images pinned to the installed Ray version (client == cluster)
    for key in ("image", "head_image", "worker_image"):
        if key in c["docker"]:
            m = RAY_IMAGE_RE.match(c["docker"][key])
            assert m and m["ver"] == ray.__version__, f"{key}: {c['docker'][key]}"
    assert c["docker"]["image"].endswith("-gpu")
    # the project is uploaded and installed
    assert "." in c["file_mounts"].values()
    assert any("pip install -e ." in cmd for cmd in c["setup_commands"])
    # dashboard bound to localhost on the head; workers join the head's GCS
    head_cmd = " ".join(c["head_start_ray_commands"])
    assert "--head" in head_cmd and "--dashboard-host=127.0.0.1" in head_cmd
    assert "0.0.0.0" not in head_cmd
    assert "$RAY_HEAD_IP:6379" in " ".join(c["worker_start_ray_commands"])


# ---------------------------------------------------------------------------------------------- KubeRay / MLflow
def _raycluster() -> dict:
    (rc,) = _by_kind(KUBERAY / "raycluster.yaml", "RayCluster")
    return rc


def test_manifests_have_api_kind_name():
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in _docs(path):
            assert doc.get("apiVersion"), f"{path.name}: apiVersion missing"
            assert doc.get("kind"), f"{path.name}: kind missing"
            assert doc.get("metadata", {}).get("name"), f"{path.name}: {doc.get('kind')} metadata.name missing"
    kinds = {p.name: sorted(d["kind"] for d in _docs(p)) for p in KUBERAY.glob("*.yaml")}
    assert kinds == {
        "raycluster.yaml": ["PersistentVolumeClaim", "RayCluster"],
        "rayjob-pretrain.yaml": ["RayJob"],
        "rayjob-sweep.yaml": ["RayJob"],
        "mlflow.yaml": ["Deployment", "PersistentVolumeClaim", "Service"],
    }


def test_raycluster_version_images_gpus_volumes():
    rc = _raycluster()
    assert rc["apiVersion"] == "ray.io/v1"
    assert rc["spec"]["rayVersion"] == ray.__version__
    head = rc["spec"]["headGroupSpec"]
    assert str(head["rayStartParams"]["num-cpus"]) == "0"
    pods = [head["template"]] + [g["template"] for g in rc["spec"]["workerGroupSpecs"]]
    for pod in pods:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
        for c in _containers(pod):
            m = RAY_IMAGE_RE.match(c["image"])
            assert m and m["ver"] == ray.__version__, c["image"]
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert claims.get(mounts.get("/shared")) == "surgmotion-shared", "shared PVC not mounted at /shared"
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env["SURGMOTION_HOME"].startswith("/shared/")
    (gpu,) = [g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu-group"]
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    for c in _containers(gpu["template"]):
        limits = c["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert c["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
    (pvc,) = _by_kind(KUBERAY / "raycluster.yaml", "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "surgmotion-shared"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def _pyproject_deps_without_ray() -> list[str]:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not d.startswith("ray")]


@pytest.mark.parametrize("name", ["rayjob-pretrain.yaml", "rayjob-sweep.yaml"])
def test_rayjob_targets_cluster_and_runtime_env(name):
    (job,) = _by_kind(KUBERAY / name, "RayJob")
    spec = job["spec"]
    rc = _raycluster()
    assert spec["clusterSelector"]["ray.io/cluster"] == rc["metadata"]["name"]
    assert job["metadata"]["namespace"] == rc["metadata"]["namespace"]
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"].endswith(".zip"), "remote working_dir must be a zip URI"
    assert env["env_vars"]["SURGMOTION_HOME"] == "/shared/surgmotion"
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # the per-job pip env is exactly pyproject's pinned set (ray comes from the image)
    assert env["pip"]["packages"] == _pyproject_deps_without_ray()
    for c in _containers(spec["submitterPodTemplate"]):
        m = RAY_IMAGE_RE.match(c["image"])
        assert m and m["ver"] == ray.__version__


def test_mlflow_manifest():
    path = KUBERAY / "mlflow.yaml"
    (dep,) = _by_kind(path, "Deployment")
    (svc,) = _by_kind(path, "Service")
    (pvc,) = _by_kind(path, "PersistentVolumeClaim")
    assert dep["spec"]["replicas"] == 1, "sqlite backend: one server"
    (c,) = _containers(dep["spec"]["template"])
    import mlflow

    assert c["image"].endswith(f":v{mlflow.__version__}"), "MLflow server image must match the client version"
    cmd = c["command"] + c["args"]
    assert cmd[:2] == ["mlflow", "server"]

    def arg(flag: str) -> str:
        return cmd[cmd.index(flag) + 1]

    assert arg("--backend-store-uri") == "sqlite:////mlflow/mlflow.db"
    assert arg("--artifacts-destination") == "/shared/mlartifacts"
    assert "--serve-artifacts" in cmd
    assert arg("--host") == "0.0.0.0"
    assert arg("--port") == "5000"
    # MLflow 3's host-header middleware: the in-cluster names (with port) must be allowed
    from mlflow.server.security_utils import is_allowed_host_header

    allowed = arg("--allowed-hosts").split(",")
    ns = dep["metadata"]["namespace"]
    for host in ("mlflow:5000", f"mlflow.{ns}.svc:5000", f"mlflow.{ns}.svc.cluster.local:5000", "localhost:5000"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "evil.example.com")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert claims[mounts["/mlflow"]] == pvc["metadata"]["name"]
    assert claims[mounts["/shared"]] == "surgmotion-shared"
    assert svc["metadata"]["name"] == "mlflow"
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["port"] == 5000


# ---------------------------------------------------------------------------------------------- CLI arguments
def _entrypoint(name: str) -> list[str]:
    (job,) = _by_kind(KUBERAY / name, "RayJob")
    return shlex.split(job["spec"]["entrypoint"])


def _config_and_overrides(argv: list[str]) -> tuple[str, list[str]]:
    config = argv[argv.index("--config") + 1]
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert (REPO_ROOT / config).is_file(), f"--config {config} does not exist in the repo"
    return config, overrides


def test_pretrain_job_arguments_are_valid_config_keys():
    argv = _entrypoint("rayjob-pretrain.yaml")
    assert argv[:2] == ["python", "experiments/pretrain.py"]
    config, overrides = _config_and_overrides(argv)
    cfg = load_config(PretrainConfig, REPO_ROOT / config, overrides)
    assert cfg.ray.storage_path.startswith("/shared/")
    assert cfg.tracking.tracking_uri == "http://mlflow:5000"
    assert cfg.data.manifest.startswith("/shared/")
    # and a typo would have been caught
    with pytest.raises(ConfigError):
        load_config(PretrainConfig, REPO_ROOT / config, overrides + ["ray.storage=/x"])


def _load_sweep_cli():
    path = REPO_ROOT / "experiments" / "sweep_probes.py"
    sys.path.insert(0, str(REPO_ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("_sweep_probes_cli", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_job_arguments_are_valid_config_keys():
    cli = _load_sweep_cli()
    from orchestrator.probe.config import SweepConfig
    argv = _entrypoint("rayjob-sweep.yaml")
    assert argv[:2] == ["python", "experiments/sweep_probes.py"]
    args = cli.build_parser().parse_args(argv[2:])  # unknown flags → SystemExit
    cfg = load_config(SweepConfig, REPO_ROOT / args.config, args.overrides)
    assert cfg.tracking_uri == "http://mlflow:5000"
    assert cfg.cache_dir.startswith("/shared/") and cfg.storage_dir.startswith("/shared/")
    for bench in cfg.benchmarks:
        assert cfg.data_roots.get(bench, "").startswith("/shared/"), f"no data root for {bench}"
    # the pretrain job stores checkpoints where `--all` looks for the newest one: $SURGMOTION_HOME/ray_results
    (pre,) = _by_kind(KUBERAY / "rayjob-pretrain.yaml", "RayJob")
    home = yaml.safe_load(pre["spec"]["runtimeEnvYAML"])["env_vars"]["SURGMOTION_HOME"]
    _, overrides = _config_and_overrides(_entrypoint("rayjob-pretrain.yaml"))
    assert f"ray.storage_path={home}/ray_results" in overrides


# ---------------------------------------------------------------------------------------------- local.sh
LOCAL_SH = CLUSTER / "local.sh"


def test_local_sh_syntax():
    subprocess.run(["bash", "-n", str(LOCAL_SH)], check=True)
    assert os.access(LOCAL_SH, os.X_OK), "cluster/local.sh must be executable"
    r = subprocess.run(["bash", str(LOCAL_SH), "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_local_sh_ports() -> tuple[int, int]:
    """A base port whose +1..+3 (client / agent ports) are free too, and a free dashboard port: fixed candidates
    below the ephemeral range, not Ray's default 6379 nor local.sh's 6390 (a developer may have that one up).
    A CI run once found 6410 taken while the suite ran, so the test tries a few instead of failing."""
    for base, dashboard in zip(range(6410, 6530, 20), range(8277, 8397, 20)):
        if not any(_listening(p) for p in (*range(base, base + 4), dashboard)):
            return base, dashboard
    pytest.fail("no free port set for local.sh in 6410-6513 / 8277-8376")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_local_sh_up_two_nodes_down(tmp_path):
    port, dashboard = _free_local_sh_ports()
    ray_tmp = Path("/tmp") / f"smray-test-{os.getpid()}"  # short: Ray's socket paths have a length limit
    env = dict(os.environ, SURGMOTION_RAY_PORT=str(port), SURGMOTION_RAY_DASHBOARD_PORT=str(dashboard),
               SURGMOTION_RAY_TEMP_DIR=str(ray_tmp),
               SURGMOTION_RAY_STATE=str(tmp_path / "state"), RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)

    def sh(*args, timeout=150):
        return subprocess.run(["bash", str(LOCAL_SH), *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    # a Ray process that is not ours must survive `down`: snapshot every raylet / gcs_server before
    others = {int(p) for p in subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True,
                                             text=True).stdout.split()}
    up = sh("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{dashboard}" in up.stdout
        state = dict(line.split("=", 1) for line in (tmp_path / "state").read_text().splitlines())
        pids = [int(p) for p in state["pids"].split(",")]
        assert len(pids) >= 4 and all(_pid_alive(p) for p in pids)
        assert not set(pids) & others
        again = sh("up")
        assert again.returncode == 0 and "already up" in again.stderr
        # two nodes seen from a separate driver
        probe = subprocess.run(
            [sys.executable, "-c",
             f"import ray; ray.init(address='127.0.0.1:{port}', log_to_driver=False); "
             "print(sum(n['Alive'] for n in ray.nodes()), int(ray.cluster_resources()['CPU']))"],
            env=env, capture_output=True, text=True, timeout=60)
        assert probe.stdout.split()[-2:] == ["2", "2"], probe.stdout + probe.stderr
        assert sh("status").returncode == 0
    finally:
        down = sh("down")
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in pids if _pid_alive(p)]
    # `down` signalled only our processes: none of the Ray processes that were running before `up`
    signalled = {int(p) for line in down.stderr.splitlines() if "stopping pids:" in line
                 for p in line.split("stopping pids:")[1].split()}
    assert set(pids) <= signalled
    assert not signalled & others, "down signalled a Ray process it did not start"
    assert sh("status").returncode == 1
    assert not (Path("/tmp/ray") / "ray_current_cluster").exists() or \
        str(port) not in (Path("/tmp/ray") / "ray_current_cluster").read_text()
