"""placeholder, replaced by the data-pipeline owner."""
import click


@click.command()
def preview() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
