"""Named server sizes (`flavor` / `type_id`), the same for every provider that can limit them."""

from benchbed.errors import InputError

# name -> (vCPUs, memory in MiB)
SIZES: dict[str, tuple[int, int]] = {
    "tiny": (1, 512),
    "small": (1, 1024),
    "medium": (2, 2048),
    "large": (2, 4096),
    "xlarge": (4, 8192),
}


def lookup(name: str) -> tuple[int, int]:
    """vCPUs and MiB of a size; an unknown name is bad input that lists the known ones."""
    if name not in SIZES:
        known = ", ".join(f"{size} ({cpus} vCPU, {mib} MiB)" for size, (cpus, mib) in SIZES.items())
        raise InputError(f"unknown size '{name}' (known: {known})")
    return SIZES[name]
