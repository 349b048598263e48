"""placeholder, replaced by the data-readers owner."""
import click


@click.command()
def check() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
