"""placeholder, replaced by the data-pipeline owner."""
import click


@click.command()
def synth() -> None:
    """Not built yet."""
    raise click.ClickException("not available")


@click.command()
def video() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
