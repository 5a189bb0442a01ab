"""No Docker engine runs here: check the Dockerfile statically against the project it packages."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_copies_every_package_and_runs_textcls():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = set(re.findall(r"^COPY (\S+) ", text, flags=re.M))
    assert set(packages) | {"conf", "pyproject.toml"} <= copied
    assert re.search(r'^ENTRYPOINT \["textcls"\]', text, flags=re.M)
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)  # non-root
    # torch is installed pinned and before the project, so pip never resolves a CUDA build by accident
    assert text.index('pip install "torch==${TORCH_VERSION}"') < text.index("pip install .")
    assert "/app/conf/default.yaml" in text and (ROOT / "conf" / "default.yaml").is_file()
