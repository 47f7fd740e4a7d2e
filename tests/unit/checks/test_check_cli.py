"""`transit check` through the real typer app: exit codes, report lines, JSON, no Pulumi."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from checks_fabric import raw
from typer.testing import CliRunner

from transit_cli.main import app

REPO = Path(__file__).resolve().parents[3]
FABRICS = REPO / "stacks" / "fabrics"
runner = CliRunner()


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "fabric.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_compliant_fabric_passes_and_names_every_point(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(write(tmp_path, raw())), "--env", "prod"])
    assert result.exit_code == 0, result.output
    assert "passed (prod): 0 violation(s), 5 test(s)" in result.output
    assert "azure:nsgs" in result.output and "gcp:firewall" in result.output and "dataplane:connector-aws-app" in result.output


def test_mandatory_violation_exits_1_advisory_does_not(tmp_path: Path) -> None:
    document = raw()
    document["policy"]["rules"].insert(0, {"name": "open-ssh", "from": "any", "to": "db", "proto": "tcp", "ports": [22], "action": "permit"})
    document["policy"]["tests"] = []
    path = write(tmp_path, document)
    prod = runner.invoke(app, ["check", str(path), "--env", "prod"])
    assert prod.exit_code == 1
    assert "mandatory: policy.rules[0]: rule 'open-ssh' permits any to administrative port(s) 22" in prod.output
    dev = runner.invoke(app, ["check", str(path), "--env", "dev"])
    assert dev.exit_code == 0 and "advisory: policy.rules[0]" in dev.output


def test_failing_assertion_exits_1_with_the_flow(tmp_path: Path) -> None:
    document = raw()
    document["policy"]["tests"] = [{"from": "aws-app", "to": "db", "proto": "tcp", "port": 5433, "expect": "permit"}]
    result = runner.invoke(app, ["check", str(write(tmp_path, document)), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    [finding] = report["findings"]
    assert finding["kind"] == "test-fails" and finding["path"] == "policy.tests[0]"
    assert finding["flow"] == {"src": "10.30.40.1", "dst": "172.18.40.10", "proto": "tcp", "port": 5433}
    assert finding["points"]["intent"] == {"verdict": "deny", "by": "default"}


def test_unreadable_spec_or_config_exits_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["check", str(tmp_path / "missing.yaml")]).exit_code == 2
    bad = tmp_path / "cfg.json"
    bad.write_text('{"no-such-rule": "mandatory"}')
    result = runner.invoke(app, ["check", str(FABRICS / "seed000_aws_azure.yaml"), "--policy-config", str(bad)])
    assert result.exit_code == 2 and "no-such-rule" in result.output


def test_plain_text_bgp_key_in_the_stack_that_deploys_the_fabric(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    (stacks / "fabrics").mkdir(parents=True)
    fabric = stacks / "fabrics" / "f.yaml"
    fabric.write_text((FABRICS / "seed004_dx_er_cloud_router.yaml").read_text())
    (stacks / "Pulumi.prod.yaml").write_text("config:\n  transit:fabric: fabrics/f.yaml\n  transit:fraDxMd5: plain\n"
                                             "  transit:fraErMd5:\n    secure: v1:abc\n")
    result = runner.invoke(app, ["check", str(fabric), "--env", "prod", "--stacks-dir", str(stacks), "--json"])
    auth = [v for v in json.loads(result.output)["violations"] if v["rule"] == "circuit-bgp-auth"]
    assert [(v["path"], v["level"]) for v in auth] == [("circuits[0].bgp.md5_secret", "mandatory")]
    assert "plain" not in auth[0]["message"].replace("plain text", "")


def test_check_never_imports_pulumi_or_a_cloud_sdk() -> None:
    """`transit check` stays a pure command: a fresh interpreter runs it and no Pulumi or cloud SDK module gets loaded.

    Behaviour only; how long it takes is a benchmark's business (bench/), not a test's.
    """
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\nfrom transit_cli.main import app\n"
        f"r = CliRunner().invoke(app, ['check', {str(FABRICS / 'architecture_example.yaml')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m == 'pulumi' or m.startswith(('pulumi.', 'pulumi_')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"transit check imported {done.stdout.split()[:5]}"
