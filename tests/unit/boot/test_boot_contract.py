"""The AWS side of the boot contract: what the components write into user data is what the boot step reads.

Builds the AgentConfig of a real fabric as components/aws/build.py does (the plan's agents
through components/aws/agent_configs.py),
wraps it with components/aws/base.py `boot_user_data` (what `user_data` applies
to the launch templates' AgentConfig Output; the component tests check the
launch templates carry it), serves
the decoded user data through IMDSv2 on loopback, and boots from it. Also
checks that the SSM names the boot step reads are the ones the instance role
may read (components/aws/base.py `node_policy`).
"""
from __future__ import annotations

import base64
import fnmatch
import json
from pathlib import Path

from boot_fixtures import SECRETS
from metadata_server import aws_server

from components.aws.agent_configs import connector_config
from components.aws.base import boot_user_data, node_policy, parameter_prefix
from components.loader import load_spec
from components.targets import plan_fabric
from dataplane.boot import boot
from dataplane.boot_sources import Aws, Http
from dataplane.boot_document import ITEMS, parse_document


FABRICS = Path(__file__).resolve().parents[3] / "stacks" / "fabrics"


def _user_data(prefix: str) -> bytes:
    """What an AWS connector's launch template carries, decoded as IMDS serves it."""
    spec = load_spec(FABRICS / "seed000_aws_azure.yaml")
    plan = plan_fabric(spec)
    layout = plan.sections["aws"].layout
    network = layout.networks[0]
    agents = {a.name: a for a in plan.agents}
    config = connector_config(agents[f"connector-{network.name}"], plan.members, layout, network, {"aws-use1": "203.0.113.7"})
    return base64.b64decode(boot_user_data(config.model_dump_json(), prefix))


def test_what_the_aws_components_write_into_user_data_boots_a_connector(tmp_path: Path) -> None:
    prefix = parameter_prefix("acme", "dev", "aws-app-connector")
    served = _user_data(prefix)
    server = aws_server(served, {f"{prefix}/{item}": SECRETS[item] for item in ITEMS})
    with server.running():
        document = boot(Aws(imds=server.url, ssm_endpoint=server.url, ec2_endpoint=server.url, http=Http(deadline=0.5)), tmp_path)
    assert document.agent.role == "connector"
    written = json.loads((tmp_path / "etc/transit/agent.json").read_text())
    assert written == json.loads(document.agent.model_dump_json())
    assert (tmp_path / document.agent.tls.key.relative_to("/")).read_text() == SECRETS["key"]


def test_the_instance_role_may_read_every_parameter_the_boot_step_asks_for() -> None:
    prefix = parameter_prefix("acme", "dev", "aws-app-connector")
    document = parse_document(_user_data(prefix))
    policy = json.loads(node_policy("acme", "dev", "aws-app-connector", "connector"))
    read = next(s for s in policy["Statement"] if s["Sid"] == "ReadOwnParameters")
    assert "ssm:GetParameters" in read["Action"]
    for item in document.items():
        arn = f"arn:aws:ssm:eu-west-1:123456789012:parameter{document.secrets.name(item)}"
        assert any(fnmatch.fnmatchcase(arn, pattern) for pattern in read["Resource"]), arn
