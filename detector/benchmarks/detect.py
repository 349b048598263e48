"""placeholder, replaced by its owner."""
import click


@click.command()
def detect() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
