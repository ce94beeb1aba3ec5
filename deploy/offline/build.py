"""Build the Assay image without a registry: `python -m deploy.offline build [--tag assay:offline]`.

1. wheels: `pip wheel` of the SDK, the platform and every pinned dependency, on the host (with
   whatever index the host's pip is configured for), into `<work>/context/wheels`;
2. base: a Debian bookworm rootfs made with `debootstrap` (python3, a Java 17 runtime, curl,
   procps, redis-server) from the host's Debian mirror, imported with `docker import`;
3. image: `docker build --network host` of deploy/offline/Dockerfile over `<work>/context`.

Each step is skipped when its product already exists (a rerun reuses the wheels and the base).
Needs root (debootstrap) and a Docker engine (`DOCKER_HOST`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_PACKAGES = ("python3", "python3-venv", "openjdk-17-jre-headless", "procps", "curl", "redis-server",
                 "ca-certificates")  # fmt: skip
# Debian bookworm's Python is 3.11.2: below 3.11.3 the pinned redis client also needs this.
EXTRA_REQUIREMENTS = ("async-timeout>=4.0.3",)
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The host's Debian archive (deb822 `URIs:` or one-line `deb` entries), else deb.debian.org."""
    files = sorted(sources.glob("sources.list.d/*.sources")) + sorted(sources.glob("sources.list*"))
    for path in files:
        if not path.is_file():
            continue
        for url in re.findall(r"^(?:URIs:|deb)\s+(\S+)", path.read_text(), re.M):
            if url.rstrip("/").endswith("/debian"):
                return url
    return DEFAULT_MIRROR


def archive_reachable(mirror: str, timeout: float = 15.0) -> bool:
    """Whether debootstrap can reach the Debian archive (its bookworm Release file answers)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{mirror.rstrip('/')}/dists/bookworm/Release", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def download_wheels(destination: Path) -> None:
    """Wheels for the image's `pip install --no-index` (pyspark is built from its sdist here)."""
    if destination.is_dir() and any(destination.glob("assay_platform-*.whl")):
        return
    destination.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(destination),
               str(REPO / "sdk" / "python"), str(REPO), *EXTRA_REQUIREMENTS]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO)


def make_base(rootfs: Path, tag: str, mirror: str) -> None:
    """debootstrap a bookworm rootfs and `docker import` it as `tag`."""
    if image_exists(tag):
        return
    if not (rootfs / "usr" / "bin" / "java").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                   "bookworm", str(rootfs), mirror]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
    if tar.wait() != 0:
        raise RuntimeError(f"tar of {rootfs} failed")


def build_image(context: Path, tag: str, base: str) -> None:
    shutil.copy(REPO / "deploy" / "offline" / "Dockerfile", context / "Dockerfile")
    command = ["docker", "build", "--quiet", "--network", "host", "--build-arg", f"BASE={base}",
               "--tag", tag, str(context)]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def build(work: Path, tag: str, base: str, mirror: str, *, rebuild_wheels: bool = False) -> None:
    """The three steps; the caller times them by calling the step functions itself if it wants."""
    context = work / "context"
    if rebuild_wheels:
        shutil.rmtree(context / "wheels", ignore_errors=True)
    download_wheels(context / "wheels")
    make_base(work / "rootfs", base, mirror)
    build_image(context, tag, base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.offline build", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--tag", default="assay:offline")
    parser.add_argument("--base", default="assay-base:bookworm", help="tag of the debootstrapped base image")
    parser.add_argument("--work", type=Path, default=REPO / ".assay" / "offline", help="wheels and rootfs")
    parser.add_argument("--mirror", default=None, help="Debian archive (default: the host's)")
    args = parser.parse_args(argv)
    build(args.work, args.tag, args.base, args.mirror or debian_mirror(), rebuild_wheels=True)
    print(f"built {args.tag} (base {args.base}); run the stack with ASSAY_IMAGE={args.tag} and "
          "-f docker-compose.yml -f deploy/offline/docker-compose.offline.yml")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
