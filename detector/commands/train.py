"""`detector train` (placeholder until its issue lands; replaced by the owner)."""

import click


@click.command()
def train() -> None:
    """Not built yet."""
    raise click.ClickException("train is not available in this build")
