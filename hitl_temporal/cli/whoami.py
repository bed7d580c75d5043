"""`hitl whoami`: whose proof your decisions and operator actions carry."""

from __future__ import annotations

import click

from activities.identity import local_issuer_enabled
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.credentials import CredentialsError, NotLoggedIn, describe_login, login_for, read_login


@click.command()
@state_dir_option
@pass_app
def whoami(app: Application) -> None:
    """The person, issuer and expiry of your `hitl login` (exit 1 when there is none to use)."""
    settings = app.settings

    def body() -> int:
        if settings.identity == "asserted":
            click.echo("identity is asserted (HITL_IDENTITY=asserted): cases take --as at its word, no proof is sent")
        if local_issuer_enabled(settings):
            click.echo(
                f"the local issuer of {one_line(str(settings.state_dir))} is on: --as PERSON picks who you are "
                "(`hitl token --as PERSON` prints such a proof)"
            )
        cached = read_login()
        if cached is None:
            app.fail("not logged in: run `hitl login`" if settings.oidc_issuer else "not logged in", 1)
        try:
            login_for(settings.oidc_issuer)
        except NotLoggedIn as err:
            click.echo(f"cached login: {describe_login(cached)}")
            app.fail(one_line(str(err)), 1)
        click.echo(f"logged in as {describe_login(cached)}")
        return 0

    app.call(body, also=(CredentialsError,))
