"""`benchbed image build|save|list|delete`: images that providers clone servers from."""

from typing import Any

import click

from benchbed.cli import render

provider_option = click.option("--provider", default="lxc", show_default=True,
                               help="Which provider's images (lxc or LxcProvider, virsh or "
                                    "VirshProvider, ...).")


@click.group("image")
def image_group() -> None:
    """Base images that providers clone their servers from."""


@image_group.command("build")
@provider_option
@click.option("--name", help="Image name (default: the provider's base image of the release).")
@click.option("--release", default="bookworm", show_default=True, help="Debian release.")
@click.option("--rebuild", is_flag=True, help="Build again even if the image exists.")
def build(provider: str, name: str | None, release: str, rebuild: bool) -> None:
    """Build (or reuse) a base image."""
    from benchbed import api

    image = api.image_build(provider, name=name, release=release, rebuild=rebuild)
    render.note(f"image '{image['name']}' ready")


@image_group.command("save")
@click.argument("deployment")
@click.option("--name", "image", required=True, help="Name of the new image.")
@click.option("--force", is_flag=True,
              help="Break the lease of a holder that is gone (a save that was killed).")
def save(deployment: str, image: str, force: bool) -> None:
    """Turn a finished deployment's servers into images new deployments start from."""
    from benchbed import api

    for saved in api.save_image(deployment, image, force=force):
        render.note(f"image '{saved['name']}' saved from {_server(saved['origin'])}")


@image_group.command("list")
@provider_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_images(provider: str, as_json: bool) -> None:
    """List base images."""
    from benchbed import api

    images = api.image_list(provider)
    if as_json:
        render.emit_json(images)
    else:
        render.table(["NAME", "RELEASE", "SIZE", "CREATED", "ORIGIN", "LOCATION"],
                     [(i["name"], i.get("release", ""), i.get("size", ""),
                       i.get("created_at", ""), _origin(i), i.get("location", ""))
                      for i in images])


def _origin(image: dict[str, Any]) -> str:
    """Where an image came from: a deployment's server on a base image, or a build."""
    if image.get("state") == "half-made":
        return "half-made (image delete removes it)"
    origin = image.get("origin")
    if not origin:
        return "built"
    return f"{origin['deployment']} ({origin['engine']}, {_server(origin)}) on {image['base']}"


def _server(origin: dict[str, Any]) -> str:
    """The server a snapshot was made of: an LXC container or a libvirt domain."""
    return origin.get("container") or origin.get("domain") or "?"


@image_group.command("delete")
@provider_option
@click.argument("name")
def delete(provider: str, name: str) -> None:
    """Delete a base image (refused while servers are cloned from it)."""
    from benchbed import api

    api.image_delete(provider, name)
    render.note(f"image '{name}' deleted")
