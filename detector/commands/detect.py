"""`detector detect` (placeholder until its issue lands; replaced by the owner)."""

import click


@click.command()
def detect() -> None:
    """Not built yet."""
    raise click.ClickException("detect is not available in this build")
