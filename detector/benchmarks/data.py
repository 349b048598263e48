"""placeholder, replaced by its owner."""
import click


@click.command()
def data() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
