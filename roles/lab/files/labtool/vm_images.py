"""The VM images: Debian packages only, built with mmdebstrap by ebpfd_image.sh, cached by digest.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labtool.errors import VmError

FILES = Path(__file__).resolve().parent.parent   # roles/lab/files: the image script and package lists
IMAGE_SCRIPT = FILES / "ebpfd_image.sh"
PACKAGES_DIR = FILES / "images"


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or one-line .list), for the image build.

    The first enabled `deb` source with a plain suite (no `-security`, `-updates`) wins.
    """
    entries: list[tuple[list[str], list[str], list[str]]] = []  # (types, uris, suites)
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for para in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in para.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, _sep, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                entries.append((fields.get("types", "").split(), fields.get("uris", "").split(),
                                fields.get("suites", "").split()))
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    rest = words[1:]
                    if rest[0].startswith("["):
                        while rest and not rest[0].endswith("]"):
                            rest = rest[1:]
                        rest = rest[1:]
                    if len(rest) >= 2:
                        entries.append((["deb"], [rest[0]], [rest[1]]))
    for types, uris, suites in entries:
        if "deb" in types and uris and any("-" not in s and "/" not in s for s in suites):
            return uris[0]
    raise VmError(f"no Debian mirror found in {etc}/sources.list*: the VM images are built from it")


def image_suite(image: str) -> str:
    for line in (PACKAGES_DIR / f"{image}.packages").read_text().splitlines():
        if line.startswith("# suite:"):
            return line.split(":", 1)[1].strip()
    raise VmError(f"{image}.packages names no '# suite:'")


def image_digest(image: str) -> str:
    """Digest of what the image is made of: its package list and the build script."""
    h = hashlib.sha256()
    for path in (PACKAGES_DIR / f"{image}.packages", IMAGE_SCRIPT):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def image_path(image_dir: Path, image: str) -> Path:
    return image_dir / f"{image}-{image_digest(image)}"


def image_ready(path: Path) -> bool:
    return all((path / f).is_file() for f in ("rootfs.img", "vmlinuz", "initrd.img", "packages.txt"))


def ensure_image(image_dir: Path, image: str) -> tuple[Path, float | None]:
    """The cached image (built first when its digest changed); returns (dir, build seconds or None)."""
    path = image_path(image_dir, image)
    if image_ready(path):
        return path, None
    image_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(image_dir / f"{image}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if image_ready(path):
            return path, None
        for tool in ("mmdebstrap", "mkfs.ext4"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise VmError(f"{tool} not found: run tools/install-system-deps.sh (or apt-get install mmdebstrap)")
        t0 = time.monotonic()
        proc = subprocess.run(
            ["sh", str(IMAGE_SCRIPT), "build", image_suite(image), str(PACKAGES_DIR / f"{image}.packages"),
             apt_mirror(), str(path)],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TMPDIR": str(image_dir)})
        if proc.returncode != 0 or not image_ready(path):
            raise VmError(f"building VM image {image} failed (rc={proc.returncode})", stderr=proc.stderr[-3000:])
        for old in image_dir.glob(f"{image}-*"):  # earlier digests of the same image
            if old != path and old.is_dir() and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
        return path, round(time.monotonic() - t0, 1)
    finally:
        os.close(fd)


def build_images(image_dir: Path, images: list[str]) -> dict[str, dict]:
    """ensure_image for each image, all at once (a build mostly waits on the mirror and on dpkg):
    image -> {path, build_seconds} or {error}."""
    def one(image: str) -> dict:
        try:
            path, seconds = ensure_image(image_dir, image)
        except VmError as exc:
            return {"error": {"error": exc.msg, **exc.details}}
        return {"path": path, "build_seconds": seconds}

    with ThreadPoolExecutor(max_workers=max(1, len(images))) as pool:
        return dict(zip(images, pool.map(one, images)))
