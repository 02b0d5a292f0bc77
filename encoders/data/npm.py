"""Fetch an npm package's tarball with `npm pack` into a cache (no node project needed)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path


def fetch_npm_package(name: str, version: str, cache_dir: Path) -> Path:
    """Return the unpacked `package/` folder of name@version, downloading once."""
    cache_dir = Path(cache_dir)
    # npm names a scoped package's tarball without the @ and with - for the /
    flat = name.lstrip("@").replace("/", "-")
    target = cache_dir / f"{flat}-{version}"
    if (target / "package" / "package.json").is_file():
        return target / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("`npm` is not installed; fix: apt-get install -y npm")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"{flat}-{version}.tgz"
    if not tarball.is_file():
        result = subprocess.run(
            [npm, "pack", f"{name}@{version}", "--pack-destination", str(cache_dir),
             "--silent"], capture_output=True, text=True, check=False,
        )
        if result.returncode != 0 or not tarball.is_file():
            raise RuntimeError(f"npm pack {name}@{version} failed: {result.stderr.strip()}")
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(partial, filter="data")  # refuses links/paths outside the folder
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target / "package"
