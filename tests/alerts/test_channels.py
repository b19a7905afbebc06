"""Destinations: which Apprise URLs are accepted, their kinds, and their masked forms."""

from __future__ import annotations

import pytest

from alerts.channels import MAX_DESTINATION_LENGTH, ChannelError, mask, validate_destination
from alerts.signing import signed_url

SLACK_TOKENS = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("mailto://alice@example.com", "email"),
        (
            "mailtos://user:hunter2@smtp.example.com:2525/alice@example.com?from=alerts@vendor.example",
            "email",
        ),
        ("mailtos://someone:app-password@gmail.com", "email"),
        (f"slack://{SLACK_TOKENS}", "slack"),
        (f"slack://{SLACK_TOKENS}/#alerts", "slack"),
        (f"https://hooks.slack.com/services/{SLACK_TOKENS}", "slack"),  # Slack's own form
        ("slack://xoxb-1234-1234-abc124/#general", "slack"),
        ("json://example.com/hooks/usage", "webhook"),
        ("jsons://user:pw@example.com:8443/hooks?+X-Team=billing", "webhook"),
        ("form://example.com/x", "webhook"),
        ("forms://example.com/x", "webhook"),
        ("discord://1234/abcd", "other"),
        ("xml://example.com/x", "other"),
    ],
)
def test_valid_destinations_and_their_kinds(url: str, kind: str) -> None:
    assert validate_destination(url) == kind


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "destination: is empty"),
        ("   ", "destination: is empty"),
        ("x" * (MAX_DESTINATION_LENGTH + 1), "too long"),
        ("slack://", "destination: 'slack://…' is not a valid Apprise URL (An invalid Slack (first) Token"),
        ("nope://example.com", "'nope://…' is not a valid Apprise URL (Apprise has no service for nope://)"),
        ("http://example.com/hook", "Apprise has no service for http://"),
        ("json://", "'json://…' is not a valid Apprise URL (Apprise could not read it"),
        ("mailto://", "'mailto://…' is not a valid Apprise URL (Invalid ~From~ email specified)"),
        ("mailto://alice", "Invalid ~From~ email"),
        ("hooks.slack.com/services/x", "no scheme:// at the start"),
        ("json://a.example json://b.example", "contains spaces"),
        ("mailto://alice@example.com\n", "contains spaces or control characters"),
        ("portaljson://:whsec_x@example.com/hook", "internal signed-webhook scheme"),
    ],
)
def test_invalid_destinations_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ChannelError, match=None) as caught:
        validate_destination(url)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_refusal_does_not_repeat_the_url() -> None:
    with pytest.raises(ChannelError) as caught:
        validate_destination("slack://xoxq-secret-looking-token")
    assert "secret-looking" not in str(caught.value)


def test_a_refusal_is_reported_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ChannelError):
        validate_destination("nope://user:hunter2@example.com")
    assert caplog.records == []


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("mailtos://user:hunter2@smtp.example.com:2525/alice@example.com", "hunter2"),
        ("mailto://user:hunter2@example.com?pass=hunter3", "hunter3"),
        (f"slack://{SLACK_TOKENS}", "TIiajkdnlazkcOXrIdevi7"),
        (f"slack://{SLACK_TOKENS}", "A1BRTD4JD"),
        (f"https://hooks.slack.com/services/{SLACK_TOKENS}", "TIiajkdnlazkcOXrIdevi7"),
        ("slack://xoxb-1234-1234-abc124/#general", "xoxb-1234-1234-abc124"),
        ("json://user:s3cret@example.com/hook", "s3cret"),
        ("discord://1234/abcdefsecret", "abcdefsecret"),
        ("nope://user:hunter2@example.com", "hunter2"),
        ("slack://badtoken", "badtoken"),
    ],
)
def test_masking_hides_passwords_and_tokens(url: str, secret: str) -> None:
    masked = mask(url)
    assert secret not in masked
    assert masked.split("://")[0] in ("mailto", "mailtos", "slack", "json", "discord", "nope")


def test_masked_forms_keep_what_identifies_the_destination() -> None:
    assert mask("json://user:s3cret@example.com/hook").startswith("json://user:****@example.com/hook?")
    assert mask("mailto://alice@example.com").startswith("mailto://alice@example.com/?")
    assert mask(f"slack://{SLACK_TOKENS}").startswith("slack://T...2/A...D/T...7/")
    assert mask("nope://x") == "nope://…"
    assert mask("") == "…"


def test_masking_hides_the_webhook_signing_secret() -> None:
    from alerts.channels import load

    secret = "whsec_Zm9vYmFyYmF6cXV4LXNpZ25pbmctc2VjcmV0"
    signed = signed_url(load("jsons://user:pw@example.com:8443/hooks/usage?+X-Team=billing"), secret)
    assert secret in signed  # it rides in the URL (as the password)…
    assert mask(signed) == "portaljsons://"  # …which Apprise never prints
    assert "pw" not in mask(signed)
