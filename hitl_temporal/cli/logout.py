"""`hitl logout`: forget the cached login (safe to run when there is none)."""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.credentials import CredentialsError, remove_login, token_file


@click.command()
@pass_app
def logout(app: Application) -> None:
    """Remove the login `hitl login` cached; the provider's session, if any, is not touched."""

    def body() -> int:
        path = token_file()
        click.echo(f"logged out (removed {one_line(str(path))})" if remove_login(path) else "not logged in; nothing to remove")
        return 0

    app.call(body, also=(CredentialsError,))
