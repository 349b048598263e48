"""placeholder, replaced by its owner."""
import click


@click.command()
def train() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
