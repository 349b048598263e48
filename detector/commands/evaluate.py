"""`detector evaluate` (placeholder until its issue lands; replaced by the owner)."""

import click


@click.command()
def evaluate() -> None:
    """Not built yet."""
    raise click.ClickException("evaluate is not available in this build")
