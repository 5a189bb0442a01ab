"""No Docker engine runs here: check the Dockerfiles and the compose stack statically."""

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def test_dockerfile_copies_every_package_and_runs_textcls():
    text = (DOCKER / "Dockerfile").read_text()
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.split(".")[0] for p in found}  # textcls_core.* sub-packages come with the textcls_core folder
    copied = {p for line in re.findall(r"^COPY (.+) \S+$", text, flags=re.M) for p in line.split()}
    assert set(packages) | {"conf", "pyproject.toml", "prefect.yaml"} <= copied
    assert re.search(r'^ENTRYPOINT \["textcls"\]', text, flags=re.M)
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)  # non-root
    # torch is installed pinned and before the project, so pip never resolves a CUDA build by accident
    assert text.index('pip install "torch==${TORCH_VERSION}"') < text.index("pip install -c constraints.txt .")
    assert "ARG TORCH_INDEX_URL" in text  # CPU or CUDA base by build argument
    assert "/app/conf/default.yaml" in text and (ROOT / "conf" / "default.yaml").is_file()


def test_images_run_as_a_user_that_owns_the_code_and_write_only_to_the_volume():
    text = (DOCKER / "Dockerfile").read_text()
    user = re.search(r"^USER (\w+)", text, flags=re.M).group(1)
    # the worker runs flows from /app: its user owns it (a root-owned /app made `runs/` there fail)
    assert re.search(rf"chown {user}:{user} /app /data", text)
    assert all(f"--chown={user}:{user}" in line for line in re.findall(r"^COPY .+$", text, flags=re.M))
    assert 'VOLUME ["/data"]' in text and re.search(r"^WORKDIR /data$", text, flags=re.M)
    env = dict(re.findall(r"(TEXTCLS_\w+)=(\S+)", text))
    assert env == {"TEXTCLS_HOME": "/data", "TEXTCLS_RUN__OUTPUT_DIR": "/data/runs", "TEXTCLS_RUN__CACHE_DIR": "/data/cache"}
    from textcls_core.runtime.config import RunConfig
    from textcls_core.runtime.settings import env_name

    assert {env_name("run", "output_dir"), env_name("run", "cache_dir")} <= set(env) and {"output_dir", "cache_dir"} <= set(RunConfig.model_fields)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"runs", ".textcls_cache", "mlruns", "mlartifacts", "mlflow.db", ".venv", "docker/.env"} <= set(ignored)
    mlflow_image = (DOCKER / "mlflow.Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", mlflow_image, flags=re.M) and "HEALTHCHECK" in mlflow_image


def test_images_pin_the_versions_the_stack_test_ran():
    from importlib.metadata import version

    pins = dict(line.split("==") for line in (DOCKER / "constraints.txt").read_text().splitlines() if "==" in line)
    # mlflow.Dockerfile installs its server through constraints.txt: the same mlflow, driver and S3 client as the test
    assert "pip install -c /tmp/constraints.txt mlflow psycopg2-binary boto3" in (DOCKER / "mlflow.Dockerfile").read_text()
    for name in ("mlflow", "psycopg2-binary", "boto3", "botocore", "prefect", "pydantic-settings", "SQLAlchemy"):
        assert pins[name] == version(name), (name, pins[name], version(name))
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert compose["prefect-server"]["image"].startswith(f"prefecthq/prefect:{version('prefect')}-")
    pg = subprocess.run(["/usr/lib/postgresql/15/bin/postgres", "--version"], capture_output=True, text=True)
    if pg.returncode == 0:  # the PostgreSQL the stack test runs
        assert compose["postgres"]["image"] == "postgres:" + re.search(r"PostgreSQL\) (\d+\.\d+)", pg.stdout).group(1)


def _stack_command(name: str) -> list[str]:
    """The arguments docker/stack.sh passes to a server command (after `"$BIN/<name>"`, over continued lines), values cut."""
    lines = (DOCKER / "stack.sh").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if f'"$BIN/{name}" ' in line and "server" in line)
    words, i = lines[start].split(f'"$BIN/{name}" ', 1)[1], start
    while words.rstrip().endswith("\\"):
        i += 1
        words = words.rstrip()[:-1] + " " + lines[i]
    return [re.sub(r"=.*", "", w.strip('"')) for w in words.split()]


def test_compose_runs_the_commands_stack_sh_runs():
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    # mlflow: same subcommand and the same flags (values differ: container names vs loopback ports)
    assert ["mlflow", *[re.sub(r"=.*", "", a) for a in services["mlflow"]["command"]]] == ["mlflow", *_stack_command("mlflow")]
    assert "postgresql+psycopg2://" in " ".join(services["mlflow"]["command"]) and "postgresql+psycopg2://" in (DOCKER / "stack.sh").read_text()
    assert set(services["mlflow"]["environment"]) == {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    stack = (DOCKER / "stack.sh").read_text()
    for var in services["mlflow"]["environment"]:
        assert f"{var}=" in stack
    prefect_cmd = services["prefect-server"]["command"]
    assert prefect_cmd[:3] == ["prefect", "server", "start"] and _stack_command("prefect")[:2] == ["server", "start"]
    assert "PREFECT_API_DATABASE_CONNECTION_URL=\"postgresql+asyncpg://" in stack
    worker = services["worker"]
    for cmd in ("prefect work-pool create textcls-process --type process", "prefect --no-prompt deploy --all",
                "prefect worker start --pool textcls-process --with-healthcheck"):
        assert cmd in worker["command"][0] and cmd.removeprefix("prefect ") in stack.replace('"$BIN/prefect" ', "")
    for var in ("TEXTCLS_RUN__OUTPUT_DIR", "TEXTCLS_RUN__CACHE_DIR", "TEXTCLS_HOME", "PREFECT_WORKER_WEBSERVER_PORT"):
        assert var in worker["environment"] and var in stack
    for name, svc in services.items():  # every long-running service says when it is ready
        assert name == "minio-init" or "healthcheck" in svc, name
    assert (DOCKER / "postgres-init.sql").name in stack  # the same init SQL as the postgres image runs


def test_compose_stack_is_complete_and_wired():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "prefect-server", "worker"} <= set(services)
    mlflow_cmd = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql+psycopg2://" in mlflow_cmd and "--artifacts-destination=s3://" in mlflow_cmd
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "docker/Dockerfile"
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "worker-data:/data" in worker["volumes"]  # the volume is mounted where the worker writes (TEXTCLS_HOME)
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
