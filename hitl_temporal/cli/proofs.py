"""The proof a command attaches to a decision or an operator action: who sends it, signed by an issuer.

Three sources, by configuration: in asserted mode none (the case takes `--as` at its word); with
the local issuer (`hitl dev`, a laptop) a fresh token for whoever `--as` names, signed with the
state directory's key; otherwise the login `hitl login` cached, which must be the `--as` person's.
The workflow verifies whatever is sent; nothing here decides whether a proof is good.
"""

from __future__ import annotations

from datetime import timedelta

from activities.identity import LocalIssuer, LocalIssuerError, local_issuer_enabled
from hitl_temporal.cli.application import Application
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.credentials import CredentialsError, NotLoggedIn, login_for

# Long enough for an update's round trip and a retry, short enough that a token copied from a
# terminal or a log is soon worthless.
LOCAL_PROOF_TTL = timedelta(minutes=10)


def proof_for(app: Application, person: str | None) -> str | None:
    """The proof to send for `person` (the `--as` value, None when not given), or None in asserted
    mode; ends the command with one line (exit 2) when there is no proof to be had."""
    settings = app.settings
    if settings.identity == "asserted":
        return None
    person = person.strip() if person is not None else None
    local = local_issuer_enabled(settings)
    if local and person:
        try:
            return LocalIssuer(settings.state_dir).mint(person, ttl=LOCAL_PROOF_TTL)
        except LocalIssuerError as err:
            app.fail(one_line(str(err)))  # it names the key file and what to do
    if local and not settings.oidc_issuer:
        app.fail("give --as PERSON: the local issuer signs a proof for whoever --as names")
    try:
        login = login_for(settings.oidc_issuer)
    except CredentialsError as err:
        app.fail(one_line(str(err)))
    if person and login.person != person:
        app.fail(
            f"you are logged in as {one_line(login.person)}, not {one_line(person)}: "
            f"run `hitl login` as {one_line(person)}, or leave out --as to act as {one_line(login.person)}"
        )
    return login.proof


def person_of_login(app: Application) -> str | None:
    """Whose usable login is cached for the configured issuer (for a default `--as`), or None;
    a cache file that is unsafe or broken ends the command with its one line."""
    try:
        return login_for(app.settings.oidc_issuer).person
    except NotLoggedIn:
        return None
    except CredentialsError as err:
        app.fail(one_line(str(err)))


def acting_person(app: Application, given: str | None) -> str | None:
    """Who acts: `--as` when given; else, with an OIDC issuer in verified mode, whose login is cached; else None."""
    if given is not None:
        return given
    settings = app.settings
    if settings.identity == "verified" and settings.oidc_issuer:
        return person_of_login(app)
    return None


def login_hint(app: Application) -> str:
    """` or run `hitl login``, where a login would say who acts."""
    settings = app.settings
    return " or run `hitl login`" if settings.identity == "verified" and settings.oidc_issuer else ""
