"""Loading a spec file: YAML errors, duplicate keys, all problems at once, no Pulumi import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components.loader import load_spec, parse_yaml
from components.spec import FabricSpec, validate_spec
from components.spec_types import SpecError
from spec_helpers import EXAMPLES, FABRICS, example, problems_of


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_fabrics_are_valid(name: str) -> None:
    spec = load_spec(FABRICS / f"{name}.yaml")
    assert isinstance(spec, FabricSpec)
    assert spec.edges


def test_the_architecture_example_is_the_documented_one() -> None:
    spec = load_spec(FABRICS / "architecture_example.yaml")
    assert [e.name for e in spec.edges] == ["aws-use1", "az-weu"]
    assert spec.circuits[1].bgp.peering[1].compressed == "10.0.0.16/30"
    assert spec.policy.rules[0].from_ == "any"
    assert spec.cloud_router is not None and spec.cloud_router.circuits == ["fra-dx", "fra-er"]


def test_yaml_syntax_error_has_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: acme\nedges:\n  - {name: a, cloud: aws\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.path.startswith(f"{path}:4:")
    assert "YAML syntax" in problem.message


def test_duplicate_key_is_a_problem_not_a_silent_overwrite() -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml("name: acme\nname: other\n", "f.yaml")
    (problem,) = info.value.problems
    assert problem.path == "f.yaml:2:1"
    assert "appears twice" in problem.message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "missing.yaml")
    assert "cannot read" in info.value.problems[0].message


@pytest.mark.parametrize("data", [None, [], "name: x"])
def test_not_a_mapping(data: object) -> None:
    with pytest.raises(SpecError) as info:
        validate_spec(data)
    assert info.value.problems[0].path == "(root)"


def test_all_problems_are_reported_at_once_with_original_indexes() -> None:
    data = example()
    data["edges"][0]["cidr"] = "10.250.37.1/24"  # edges[0] fails to parse
    data["circuits"][0]["vlan"] = 5000  # circuits[0] fails to parse
    data["circuits"][1]["bgp"]["peering"] = ["10.0.0.12/31"]  # cross check on circuits[1]
    data["circuits"][1]["attaches"] = ["ghost"]
    data["policy"]["rules"][1]["to"] = "nobody"
    data["policy"]["tests"][1]["port"] = 0
    data["networks"][1]["name"] = "Bad Name"
    paths = {p.path for p in problems_of(data)}
    assert {
        "edges[0].cidr",
        "circuits[0].vlan",
        "circuits[1].bgp.peering",
        "circuits[1].attaches[0]",
        "policy.rules[1].to",
        "policy.tests[1].port",
        "networks[1].name",
    } <= paths


def test_a_failed_item_does_not_cause_unknown_name_problems() -> None:
    data = example()
    data["networks"][0]["cidrs"] = ["10.30.40.1/24"]  # aws-app fails to parse, but its name exists
    problems = problems_of(data)
    assert [p.path for p in problems] == ["networks[0].cidrs[0]"]


def test_problems_are_sorted_by_path_with_numeric_indexes() -> None:
    data = example()
    data["circuits"] = [dict(data["circuits"][0], name=f"c{i}", vlan=5000) for i in range(12)]
    data["cloud_router"] = None
    paths = [p.path for p in problems_of(data)]
    assert paths == [f"circuits[{i}].vlan" for i in range(12)]


def test_constructing_the_model_directly_runs_the_cross_checks() -> None:
    data = example()
    data["circuits"][1]["bgp"]["peer_asn"] = 65000
    data["circuits"][1]["bgp"]["customer_asn"] = 65000
    with pytest.raises(SpecError) as info:
        FabricSpec.model_validate(data)
    assert "circuits[1].bgp.peer_asn" in {p.path for p in info.value.problems}


def test_secret_names_survive_but_are_names() -> None:
    spec = load_spec(FABRICS / "architecture_example.yaml")
    dumped = spec.model_dump_json(by_alias=True)
    assert '"md5_secret":"fraDxMd5"' in dumped


def test_importing_spec_plan_and_package_does_not_import_pulumi() -> None:
    code = (
        "import sys, components, components.spec, components.plan, components.loader, components.segmentation.intent\n"
        "import transit_cli.main\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws', 'pulumi_azure_native', 'pulumi_gcp'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_import_check_sees_pulumi_when_it_is_imported() -> None:
    """Guard for the test above: the same probe does report a Pulumi import."""
    code = "import sys, pulumi\nprint('pulumi' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_problems_from_a_file_carry_their_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.yaml"
    path.write_text(
        "name: acme\n"
        "edges:\n"
        "  - name: aws-use1\n"
        "    cloud: aws\n"
        "    region: us-east-1\n"
        "    cidr: 10.250.37.1/24\n"
        "  - {name: az-weu, cloud: azure, region: westeurope}\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    by_path = {p.path: p for p in info.value.problems}
    assert by_path["edges[0].cidr"].line == 6
    assert by_path["edges[1].cidr"].line == 7  # missing key: the line of its item
    assert str(by_path["edges[0].cidr"]).startswith("edges[0].cidr: ")
    assert str(by_path["edges[0].cidr"]).endswith("(line 6)")


def test_components_are_exported_lazily() -> None:
    code = (
        "import sys, components\n"
        "from components import *\n"
        "assert 'components.local' not in sys.modules and 'components.fabric' not in sys.modules\n"
        "local = components.local\n"
        "print(local.__name__, 'pulumi' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "components.local"
    with pytest.raises(AttributeError):
        import components

        components.no_such_thing  # noqa: B018
