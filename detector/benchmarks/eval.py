"""placeholder, replaced by its owner."""
import click


@click.command("eval")
def eval_() -> None:
    """Not built yet."""
    raise click.ClickException("not available")
