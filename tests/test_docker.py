"""No Docker engine runs here: check the Dockerfiles and the compose stack statically."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def test_dockerfile_copies_every_package_and_runs_textcls():
    text = (DOCKER / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = {p for line in re.findall(r"^COPY (.+) \S+$", text, flags=re.M) for p in line.split()}
    assert set(packages) | {"conf", "pyproject.toml", "prefect.yaml"} <= copied
    assert re.search(r'^ENTRYPOINT \["textcls"\]', text, flags=re.M)
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)  # non-root
    # torch is installed pinned and before the project, so pip never resolves a CUDA build by accident
    assert text.index('pip install "torch==${TORCH_VERSION}"') < text.index("pip install -c constraints.txt .")
    assert "ARG TORCH_INDEX_URL" in text  # CPU or CUDA base by build argument
    assert "/app/conf/default.yaml" in text and (ROOT / "conf" / "default.yaml").is_file()


def test_compose_stack_is_complete_and_wired():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "prefect-server", "worker"} <= set(services)
    mlflow_cmd = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_cmd and "--artifacts-destination=s3://" in mlflow_cmd
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "docker/Dockerfile"
    assert worker["environment"] == {"PREFECT_API_URL": "http://prefect-server:4200/api", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    assert "prefect worker start --pool textcls-process" in worker["command"][0]
    pools = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert pools == {"textcls-process"}
    for svc in services.values():  # pinned images, never :latest
        if "image" in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), svc["image"]
    for build in (s["build"] for s in services.values() if "build" in s):
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file()


def test_no_secret_in_committed_files_and_every_variable_documented():
    text = (DOCKER / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)\}", text))
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert used <= set(example), used - set(example)
    assert all("change-me" in v for k, v in example.items() if "PASSWORD" in k)
    # secrets only ever come from variables
    for key in ("PASSWORD", "SECRET"):
        for line in text.splitlines():
            if key in line and ":" in line:
                assert "${" in line or "$$" in line, line
    assert "docker/.env" in (ROOT / ".gitignore").read_text()


def test_image_dependencies_are_pinned():
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            assert ver, f"unpinned: {line}"
            pins[name.lower().replace("_", "-")] = ver
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[<>=!~\[ ]", dep, maxsplit=1)[0].lower()
        assert name == "torch" or name in pins, f"{name} is not pinned in docker/constraints.txt"
