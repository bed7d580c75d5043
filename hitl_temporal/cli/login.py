"""`hitl login`: sign in at the configured OpenID provider with the device flow (RFC 8628)."""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.credentials import (
    CredentialsError,
    DeviceAuthorization,
    DeviceFlow,
    LoginRefused,
    describe_login,
    save_login,
)


@click.command()
@pass_app
def login(app: Application) -> None:
    """Sign in at HITL_OIDC_ISSUER; your decisions and operator actions then carry its proof of who you are."""
    settings = app.settings
    issuer, client_id = settings.oidc_issuer, settings.oidc_client_id
    if not issuer or not client_id:
        needed = (("HITL_OIDC_ISSUER", issuer), ("HITL_OIDC_CLIENT_ID", client_id))
        missing = " and ".join(name for name, value in needed if not value)
        local = "; on hitl dev use --as PERSON or `hitl token --as PERSON`" if not issuer else ""
        app.fail(f"hitl login needs {missing} (your identity provider and hitl's client id there){local}")
    flow = DeviceFlow(issuer, client_id, person_claim=settings.oidc_person_claim)

    def show(authorization: DeviceAuthorization) -> None:
        # what the provider sent is shown with hidden characters marked: it reaches the terminal
        where, code = one_line(authorization.verification_uri), one_line(authorization.user_code)
        click.echo(f"To log in, open {where} and enter the code {code}")
        if authorization.verification_uri_complete:
            click.echo(f"  or open {one_line(authorization.verification_uri_complete)}")
        seconds = authorization.expires_in
        expires = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
        click.echo(f"Waiting for your approval (the code expires in {expires})...")

    def body() -> int:
        try:
            cached = flow.login(show)
        except LoginRefused as err:
            app.fail(one_line(str(err)), 1)
        path = save_login(cached)
        click.echo(f"logged in as {describe_login(cached)}; saved in {one_line(str(path))}")
        return 0

    app.call(body, also=(CredentialsError,))
