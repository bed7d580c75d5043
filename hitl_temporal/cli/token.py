"""`hitl token --as PERSON [--ttl 1h]`: a proof of who decides, signed by the state directory's local issuer;
with an OIDC issuer, `hitl token` prints the proof of your `hitl login`.

The proof goes to stdout alone, so `--proof "$(hitl token --as fin_rev_ana)"` works; what it is
goes to stderr. The local issuer is for a laptop: whoever can read the state directory can mint a
proof for anyone. With an OIDC issuer configured, proofs come from `hitl login` instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from pydantic import TypeAdapter, ValidationError

from gates.cases import PersonId
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.options import DURATION
from hitl_temporal.cli.proofs import person_of_login, proof_for

_PERSON = TypeAdapter(PersonId)


def _person(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """PERSON is a directory id, checked as a reviewer id is."""
    if value is None:
        return None
    try:
        return _PERSON.validate_python(value)
    except ValidationError:
        raise click.BadParameter(
            f"{value[:80]!r} is not a person id (lower-case letters, digits and _ . @ -, e.g. fin_rev_ana)"
        ) from None


@click.command()
@state_dir_option
@click.option("--as", "person", metavar="PERSON", callback=_person, help="Whose proof (a directory id, e.g. fin_rev_ana).")
@click.option("--ttl", type=DURATION, default="1h", show_default=True, help="How long the proof is valid (at most 7d).")
@pass_app
def token(app: Application, person: str | None, ttl: timedelta) -> None:
    """Print a proof that PERSON is deciding, signed by the local issuer of the state directory."""
    from activities.identity import LocalIssuer, LocalIssuerError, local_issuer_enabled

    settings = app.settings
    if settings.oidc_issuer and (settings.local_issuer != "on" or person is None):
        # the proof of your `hitl login` (to paste into the Web UI's Send an Update, say)
        if person is not None:
            app.fail(f"proofs come from the OIDC issuer {settings.oidc_issuer}: use `hitl login` (--as is for the local issuer)")
        login_proof = proof_for(app, None)
        click.echo(login_proof)
        click.echo(f"proof of your `hitl login` ({person_of_login(app)}) from {settings.oidc_issuer}", err=True)
        app.finish(0)
    if not local_issuer_enabled(settings):
        app.fail("the local issuer is off (HITL_LOCAL_ISSUER=off); use `hitl login`")
    if person is None:
        # `hitl login` keeps its token in hitl_temporal.cli.credentials; printing it is that command's job.
        app.fail("give --as PERSON (local issuer) or run `hitl login`")

    def body() -> int:
        issuer = LocalIssuer(settings.state_dir)
        now = datetime.now(UTC)
        proof = issuer.mint(person, ttl=ttl, now=now)
        until = (now + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(proof)
        click.echo(
            f"proof for {person} from the local issuer of {settings.state_dir}, valid until {until} "
            "(anyone who can read that directory can mint one for anybody: for a laptop, not production)",
            err=True,
        )
        return 0

    app.call(body, also=(LocalIssuerError, ValueError))
