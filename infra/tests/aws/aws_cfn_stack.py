"""The CloudFormation stack of ``infra/aws/cloudformation/jitr.yaml``, read and created in moto.

- :func:`load_template` parses the template's short-form intrinsics (``!Ref``, ``!Sub``, ...)
  into their long form, as CloudFormation reads them.
- :data:`UNSUPPORTED_BY_MOTO` names the resource types of the template that moto's CloudFormation
  does not create; :func:`moto_variant` is the template without them (and without what refers to
  them, or with stand-ins for what they would answer), which moto creates. Those types are
  checked by cfn-lint and read from the template.
- :class:`Resolver` evaluates the template's intrinsic functions for given parameters, enough to
  read each role's policy statements from the template itself (for the resources moto skips).
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "infra" / "aws" / "cloudformation" / "jitr.yaml"

# Resource types of the template that moto's CloudFormation does not implement (it logs a warning
# and skips them). The test asserts that this is exactly the template's set, so a new resource of
# an unsupported type, or moto learning one of these, shows up here. The broker's HTTP API
# (AWS::ApiGatewayV2::*, created with Broker=true) is among them: a test gives moto a stand-in for
# the API's id and endpoint, which the functions' settings and the broker's permission name.
UNSUPPORTED_BY_MOTO = frozenset(
    {
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::Stage",
        "AWS::CloudWatch::Alarm",
        "AWS::Lambda::Alias",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::Lambda::Url",
        "AWS::Logs::MetricFilter",
        "AWS::SecretsManager::Secret",
        "AWS::SQS::QueuePolicy",
    }
)
_SHORT_FORMS = (
    "Ref",
    "Condition",
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Contains",
)


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags read as their ``Fn::`` mappings."""


def _construct(tag: str) -> Any:
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def build(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return build


for _tag in _SHORT_FORMS:
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def _get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        resource, _, attribute = str(loader.construct_scalar(node)).partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": loader.construct_sequence(node, deep=True)}


_CfnLoader.add_constructor("!GetAtt", _get_att)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as CloudFormation reads it (long-form intrinsics)."""
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return data


def resource_types(template: Mapping[str, Any]) -> set[str]:
    return {resource["Type"] for resource in template["Resources"].values()}


def _refers_to(value: Any, names: set[str]) -> bool:
    """Whether ``value`` holds a Ref, GetAtt or ${...} of one of ``names``."""
    if isinstance(value, Mapping):
        if "Ref" in value and value["Ref"] in names:
            return True
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] in names:
            return True
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            if any(re.search(r"\$\{" + re.escape(name) + r"[.}]", text) for name in names):
                return True
        return any(_refers_to(v, names) for v in value.values())
    if isinstance(value, list):
        return any(_refers_to(v, names) for v in value)
    return False


def moto_variant(
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    stand_ins: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, Any], set[str]]:
    """The template without its resources moto cannot create, nor the outputs that name them.

    Returns the variant and the logical ids left out. A conditional resource left out (a secret
    created only when no ARN is given) is switched off by ``parameters``, or named in
    ``stand_ins`` (logical id -> what its ``Ref`` and attributes answer, as CloudFormation would);
    each ``Fn::If`` on a condition that is off takes its other branch, as CloudFormation would.
    Resources whose condition is off are left out too (CloudFormation creates none of them). Any
    other reference to a left-out resource fails: then moto would create something different
    from what CloudFormation does.
    """
    stand_ins = stand_ins or {}
    variant = copy.deepcopy(dict(template))
    resolver = Resolver(template, parameters, {}, {})
    unsupported = {name for name, r in variant["Resources"].items() if r["Type"] in UNSUPPORTED_BY_MOTO}
    absent = {
        name for name, r in variant["Resources"].items() if "Condition" in r and not resolver.condition(r["Condition"])
    }
    dropped = unsupported | absent
    off = {variant["Resources"][name]["Condition"] for name in absent}
    for name in dropped:
        del variant["Resources"][name]

    def substitute(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            resource, _, attribute = match.group(1).partition(".")
            if resource not in stand_ins:
                return match.group(0)
            return stand_ins[resource][attribute or "Ref"]

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def prune(value: Any) -> Any:
        if isinstance(value, Mapping):
            if "Fn::If" in value and value["Fn::If"][0] in off:
                return prune(value["Fn::If"][2])
            if value.get("Ref") in stand_ins:
                return stand_ins[value["Ref"]]["Ref"]
            if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] in stand_ins:
                return stand_ins[value["Fn::GetAtt"][0]][value["Fn::GetAtt"][1]]
            if "Fn::Sub" in value:
                arg = value["Fn::Sub"]
                return {"Fn::Sub": substitute(arg) if isinstance(arg, str) else [substitute(arg[0]), prune(arg[1])]}
            return {k: prune(v) for k, v in value.items()}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    variant["Resources"] = prune(variant["Resources"])
    for name, resource in variant["Resources"].items():
        assert not _refers_to(resource, dropped), (
            f"{name} refers to a resource moto cannot create: turn it off with the parameters, or give a stand-in"
        )
    variant["Outputs"] = {k: prune(v) for k, v in variant["Outputs"].items() if not _refers_to(prune(v), dropped)}
    return variant, dropped


class Resolver:
    """Evaluates the template's intrinsic functions for given parameters and physical resources.

    ``physical`` maps a logical id to what ``Ref`` answers and to its attributes (``Arn``, ...);
    a resource not in it resolves to a placeholder naming it, which a comparison can still match.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        physical: Mapping[str, Mapping[str, str]],
        pseudo: Mapping[str, str],
    ) -> None:
        self.template = template
        self.parameters = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.physical = physical
        self.pseudo = pseudo
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical.get(name, {}).get("Ref", f"<{name}>")

    def attribute(self, name: str, attribute: str) -> str:
        return self.physical.get(name, {}).get(attribute, f"<{name}.{attribute}>")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return self.attribute(arg[0], arg[1])
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Sub":
                return self._sub(arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.resolve(v) for k, v in arg[1].items()})

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name:
                resource, _, attribute = name.partition(".")
                return self.attribute(resource, attribute)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


def template_statements(resolver: Resolver, role: str) -> list[dict[str, Any]]:
    """The statements of a role's inline policies in the template, resolved."""
    policies = resolver.resolve(resolver.template["Resources"][role]["Properties"].get("Policies", []))
    return [statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]]


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def stack_role_statements(iam: Any, role_name: str) -> list[dict[str, Any]]:
    """The statements of a role's inline policies as moto holds them after ``create_stack``.

    moto keeps an inline policy that its CloudFormation created as a Python mapping and answers
    ``GetRolePolicy`` with that mapping's ``repr`` instead of JSON (``aws_flow.role_statements``
    expects JSON), so the document is read either way. The template's roles have no managed policies.
    """
    assert not iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"], role_name
    statements: list[dict[str, Any]] = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            text = unquote(document)
            try:
                document = json.loads(text)
            except json.JSONDecodeError:
                document = ast.literal_eval(text)
        found = document["Statement"]
        statements += found if isinstance(found, list) else [found]
    return statements


def allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        if statement.get("Effect") == "Allow":
            found = statement.get("Action", [])
            actions.update([found] if isinstance(found, str) else found)
    return actions
