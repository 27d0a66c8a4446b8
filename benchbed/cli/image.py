"""`benchbed image build|list|delete`: base images that providers clone servers from."""

import click

from benchbed.cli import render

provider_option = click.option("--provider", default="lxc", show_default=True,
                               help="Which provider's images (lxc, virsh, ...).")


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
        render.table(["NAME", "RELEASE", "SIZE", "CREATED", "LOCATION"],
                     [(i["name"], i.get("release", ""), i.get("size", ""),
                       i.get("created_at", ""), i.get("location", "")) for i in images])


@image_group.command("delete")
@provider_option
@click.argument("name")
def delete(provider: str, name: str) -> None:
    """Delete a base image (refused while servers are cloned from it)."""
    from benchbed import api

    api.image_delete(provider, name)
    render.note(f"image '{name}' deleted")
