"""change.yaml's standard-change templates and step containment: the defaults build valid plans,
and a template or `steps:` setting that could let a value run as code is refused by key."""

from __future__ import annotations

from typing import Any

import pytest

from itilflow.executors import ChangePlan
from itilflow.policies import Policies, PolicyError, load_policies
from itilflow.policies.change_templates import TemplateRefused, may_request_template

SAMPLES: dict[str, Any] = {
    "restart-service": {"host": "web-01", "service": "nginx.service"},
    "rotate-logs": {"config": "nginx"},
    "add-disk-space": {"host": "db-01", "volume": "vg0/data", "gigabytes": 20},
    "renew-certificate": {"host": "web-01", "domain": "shop.example.com"},
}


def test_every_default_template_builds_a_valid_plan(defaults: Policies) -> None:
    assert sorted(defaults.change.templates) == sorted(SAMPLES)
    for name, template in defaults.change.templates.items():
        plan, checked = template.build(SAMPLES[name])
        ChangePlan.model_validate(plan)
        assert "{{" not in str(plan), name
        assert checked == SAMPLES[name]


def test_the_default_containment(defaults: Policies) -> None:
    steps = defaults.change.steps
    assert steps.environment == ["PATH", "LANG", "LC_ALL", "TZ", "HOME"]
    assert steps.run_as is None and steps.cwd_roots == []
    # The stack's own addresses are resolved from the loader's context.
    assert steps.http_hosts == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "127.0.0.1:8080",
        "127.0.0.1:4200",
    ]


def test_the_stack_addresses_follow_the_running_stack(policy_dir) -> None:
    urls = {
        "gateway_url": "https://itil.example.com",
        "prefect_api_url": "http://10.0.0.5:4300/api",
    }
    steps = load_policies(policy_dir, stack_urls=urls).change.steps
    assert steps.http_hosts[-2:] == ["itil.example.com:443", "10.0.0.5:4300"]


def test_who_may_request_a_template(defaults: Policies) -> None:
    disk = defaults.change.template("add-disk-space")  # groups hardware, dba; role change_manager
    assert may_request_template(disk, "sun", frozenset(), frozenset({"dba"}))
    assert may_request_template(disk, "zhou", frozenset({"change_manager"}), frozenset())
    assert not may_request_template(disk, "lin", frozenset({"agent"}), frozenset({"servicedesk"}))


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"host": "db-01", "volume": "vg0/data", "gigabytes": 0}, "gigabytes: 0 is below"),
        ({"host": "db-01", "volume": "vg0/data", "gigabytes": "2e3"}, "expected a whole number"),
        ({"host": "db-01", "volume": "vg0/data", "gigabytes": True}, "expected a whole number"),
        ({"host": "db-01", "volume": "../etc", "gigabytes": 1}, "does not match"),
        ({"host": "db 01", "volume": "vg0/data", "gigabytes": 1}, "expected a CI name"),
        ({"host": "-oProxyCommand=id", "volume": "vg0/data", "gigabytes": 1}, "a CI name"),
    ],
)
def test_parameter_values_are_checked_against_their_type(defaults, values, says) -> None:
    with pytest.raises(TemplateRefused, match=says):
        defaults.change.template("add-disk-space").build(values)


TEMPLATE = """
templates:
  bad:
    parameters:
      word: {type: str, pattern: "[a-z]+"}
    cis: {criticality: [low]}
    requesters: {roles: [agent]}
    plan:
      steps:
        - name: step
          do: %s
          irreversible: true
"""


def replace_templates(policy_dir, templates: str) -> None:
    """change.yaml with `templates` instead of the default ones (they come last in the file)."""
    text = (policy_dir / "change.yaml").read_text()
    (policy_dir / "change.yaml").write_text(text[: text.index("\ntemplates:")] + templates)
    # proactive.yaml proposes default templates; a folder without it has proactive notices off.
    (policy_dir / "proactive.yaml").unlink()


@pytest.mark.parametrize(
    ("action", "says"),
    [
        (
            """{command: "echo '{{word}}'"}""",
            r"templates.bad.plan.steps\[0\].do.command: \{\{word\}\} is inside quotes",
        ),
        (
            """{command: 'echo "x {{word}}"'}""",
            r"steps\[0\].do.command: \{\{word\}\} is inside quotes",
        ),
        ("""{command: "echo {{other}}"}""", r"do.command: unknown parameter \{\{other\}\}"),
        ("""{command: "true", cwd: "/srv/{{word}}"}""", r"do.cwd: parameters may be used only"),
        (
            """{argv: [sh, -c, "echo {{word}}"]}""",
            r"do.argv\[2\]: a parameter in the arguments of the shell 'sh' could be run as code",
        ),
        (
            """{argv: [/bin/bash, -c, "echo $1", x, "{{word}}"]}""",
            r"do.argv\[4\]: a parameter in the arguments of the shell 'bash'",
        ),
        ('"echo hi"', r"plan.steps\[0\]: expected a mapping with a name and `do`"),
    ],
    ids=["single-quotes", "double-quotes", "unknown", "in-cwd", "sh-c", "bash-args", "no-action"],
)
def test_a_placeholder_that_could_run_as_code_is_refused_by_key(policy_dir, action, says) -> None:
    replace_templates(policy_dir, TEMPLATE % action)
    with pytest.raises(PolicyError, match=f"change.yaml: .*{says}"):
        load_policies(policy_dir)


def test_a_bare_placeholder_in_a_command_is_accepted(policy_dir) -> None:
    replace_templates(policy_dir, TEMPLATE % """{command: "echo x{{word}}y"}""")
    template = load_policies(policy_dir).change.template("bad")
    plan, _ = template.build({"word": "abc"})
    assert plan["steps"][0]["do"] == {"kind": "shell", "command": "echo xabcy"}


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "environment: [PATH, LANG, LC_ALL, TZ, HOME]",
            "environment: [PATH, ITILFLOW_API_TOKEN, PREFECT_API_AUTH_STRING]",
            "steps.environment: ITILFLOW_API_TOKEN, PREFECT_API_AUTH_STRING may hold secrets",
        ),
        (
            'http_hosts: [localhost, 127.0.0.1, "[::1]", "{gateway_url}", "{prefect_api_url}"]',
            'http_hosts: ["http://evil.example/"]',
            "steps.http_hosts: expected a host, host:port",
        ),
        (
            'http_hosts: [localhost, 127.0.0.1, "[::1]", "{gateway_url}", "{prefect_api_url}"]',
            'http_hosts: ["{mail_url}"]',
            "unknown placeholder '{mail_url}'",
        ),
        ("cwd_roots: []", "cwd_roots: [srv]", r"steps.cwd_roots\[0\]"),
        (
            "requesters: {roles: [agent, change_manager]}",
            "requesters: {roles: [root]}",
            r"templates.rotate-logs.requesters.roles\[0\]: expected one of reporter",
        ),
        (
            "requesters: {roles: [agent, change_manager]}",
            "requesters: {}",
            "templates.rotate-logs.requesters: expected at least one of people, groups or roles",
        ),
        (
            "cis: {kinds: [server, service], criticality: [low, medium, high]}",
            "cis: {}",
            "templates.rotate-logs.cis: expected at least one of names, kinds or criticality",
        ),
        (
            'volume: {type: str, pattern: "[a-z0-9_]+/[a-z0-9_]+"',
            'volume: {type: str, pattern: "[a-z"',
            "templates.add-disk-space.parameters.volume.str.pattern: not a valid regular",
        ),
        (
            "gigabytes: {type: int, min: 1, max: 500}",
            "gigabytes: {type: int, min: 10, max: 5}",
            r"parameters.gigabytes.int.max: expected at least min \(10\)",
        ),
    ],
    ids=[
        "secret-env",
        "host-url",
        "host-placeholder",
        "relative-root",
        "unknown-role",
        "no-requesters",
        "no-cis",
        "bad-regex",
        "min-above-max",
    ],
)
def test_bad_steps_and_template_settings_name_their_key(policy_dir, edit, old, new, says) -> None:
    edit("change.yaml", old, new)
    with pytest.raises(PolicyError, match=says):
        load_policies(policy_dir)
