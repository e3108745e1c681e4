"""Command line interface (Typer); nothing imports it."""
