"""The OpenStack repositories of shared/upstream, extracted as BASE/openstack/NAME.git.

The tarballs are test data kept beside the repository (shared/upstream/openstack-2025.1);
the extracted folder is a cache outside the repository (/var/cache/benchbed-upstream), made
once per tarball and reused by tests and benchmarks. `BENCHBED_UPSTREAM` overrides where the
tarballs are.
"""

import os
import shutil
import tarfile
from pathlib import Path

RELEASE = "openstack-2025.1"
CACHE = Path("/var/cache/benchbed-upstream") / RELEASE
ROOT = Path(__file__).resolve().parents[1]
# Where this workplace keeps shared/, for a clone made somewhere else (CI clones into a
# fresh folder that has no shared/ beside it).
WORKPLACE_SHARED = Path("/work/shared")


def tarballs() -> Path:
    """The folder of NAME.git.tar files: $BENCHBED_UPSTREAM, else shared/ beside the repo."""
    if os.environ.get("BENCHBED_UPSTREAM"):
        return Path(os.environ["BENCHBED_UPSTREAM"])
    for shared in [parent / "shared" for parent in ROOT.parents] + [WORKPLACE_SHARED]:
        candidate = shared / "upstream" / RELEASE
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no shared/upstream/{RELEASE} above {ROOT}; set BENCHBED_UPSTREAM")


def git_mirror() -> Path:
    """BASE such that BASE/openstack/NAME.git is each upstream repository (extracted once)."""
    base = CACHE / "openstack"
    base.mkdir(parents=True, exist_ok=True)
    for tarball in sorted(tarballs().glob("*.git.tar")):
        target = base / tarball.name.removesuffix(".tar")
        marker = target / ".benchbed-extracted"
        if marker.exists() and marker.read_text() == str(tarball.stat().st_mtime):
            continue
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(base, filter="data")
        marker.write_text(str(tarball.stat().st_mtime))
    return CACHE


if __name__ == "__main__":
    print(git_mirror())
