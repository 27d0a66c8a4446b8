"""The image store contract behind `benchbed image`: one store per provider technology."""

from typing import Any, Protocol


class ImageStore(Protocol):
    """Builds, lists and deletes base images (entry point group `benchbed.images`)."""

    def build(self, name: str | None, release: str, rebuild: bool) -> dict[str, Any]:
        """Build the image unless it exists (or `rebuild`); return its description."""

    def list(self) -> list[dict[str, Any]]:
        """Describe every image: name, release, size, created_at, location."""

    def delete(self, name: str) -> None:
        """Delete an image; NotFoundError if unknown, refused while servers use it."""
