"""CloudFormation templates: reading (JSON or YAML with the short forms), checking, and the dependency order.

A template is hostile input: its size is capped (AWS's 51,200 bytes for a body), YAML is read with the
safe loader plus constructors for CloudFormation's tags only, anchors and aliases are refused (CloudFormation
does not take them, and an alias is how a small document becomes an exponential one), and nesting is capped.
Everything refused here is a ``ValidationError`` with the words CloudFormation uses ("Template format error: ...").
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

import yaml

from ...server.errors import AWSError

MAX_BODY_BYTES = 51_200  # AWS's limits: a TemplateBody, and a template read from S3 (TemplateURL)
MAX_URL_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_RESOURCES = 500  # AWS's quota per template
LOGICAL_ID = re.compile(r"[A-Za-z0-9]{1,255}")
SECTIONS = {
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Resources",
    "Outputs",
}
RESOURCE_KEYS = {
    "Type",
    "Properties",
    "DependsOn",
    "Condition",
    "Metadata",
    "DeletionPolicy",
    "UpdateReplacePolicy",
    "CreationPolicy",
    "UpdatePolicy",
}
PARAMETER_TYPES = {"String", "Number", "CommaDelimitedList", "List<Number>"}
PARAMETER_KEYS = {
    "Type",
    "Default",
    "AllowedValues",
    "AllowedPattern",
    "ConstraintDescription",
    "Description",
    "MaxLength",
    "MinLength",
    "MaxValue",
    "MinValue",
    "NoEcho",
}
PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::Region",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::URLSuffix",
    "AWS::NotificationARNs",
}
# Functions allowed where a value goes; the condition functions (Fn::Equals...) only in Conditions and Fn::If.
FUNCTIONS = {
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::If",
    "Fn::Select",
    "Fn::Split",
    "Fn::GetAZs",
    "Fn::Base64",
    "Fn::FindInMap",
    "Fn::ImportValue",
    "Fn::Cidr",
    "Fn::Length",
    "Fn::ToJsonString",
    "Fn::Transform",
}
CONDITION_FUNCTIONS = {"Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition"}
SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def format_error(message: str) -> AWSError:
    return AWSError("ValidationError", f"Template format error: {message}")


def template_error(message: str) -> AWSError:
    return AWSError("ValidationError", f"Template error: {message}")


# -- reading --------------------------------------------------------------------------------------------


def _short_form(function: str):
    """The constructor of a YAML short form (``!Ref x``): its long form (``{"Ref": "x"}``)."""

    def construct(loader: yaml.SafeLoader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if function == "Fn::GetAtt" and isinstance(value, str):
                logical, _, attribute = value.partition(".")
                value = [logical, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {function: value}

    return construct


class TemplateLoader(yaml.SafeLoader):
    """The safe loader, plus CloudFormation's tags; anchors and aliases refused."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise format_error("YAML aliases are not allowed in CloudFormation templates")
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise format_error("YAML anchors are not allowed in CloudFormation templates")
        return super().compose_node(parent, index)


for _name in (
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Select",
    "Split",
    "GetAZs",
    "Base64",
    "FindInMap",
    "ImportValue",
    "Cidr",
    "Length",
    "ToJsonString",
    "Equals",
    "And",
    "Or",
    "Not",
):
    TemplateLoader.add_constructor(f"!{_name}", _short_form(f"Fn::{_name}"))
TemplateLoader.add_constructor("!Ref", _short_form("Ref"))
TemplateLoader.add_constructor("!Condition", _short_form("Condition"))
# YAML 1.1's timestamps would turn "2010-09-09" into a date; CloudFormation reads it as a string.
TemplateLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in TemplateLoader.yaml_implicit_resolvers.items()
}


def parse(body: str, limit: int = MAX_BODY_BYTES) -> dict:
    """The template document of a body: JSON when it reads as JSON, else YAML."""
    if len(body.encode()) > limit:
        raise AWSError(
            "ValidationError",
            f"1 validation error detected: Value at 'templateBody' failed to satisfy constraint: "
            f"Member must have length less than or equal to {limit}",
        )
    try:
        doc = json.loads(body)
    except RecursionError:
        raise format_error("the template is nested too deeply") from None
    except ValueError:
        try:
            doc = yaml.load(body, Loader=TemplateLoader)  # a SafeLoader subclass
        except AWSError:
            raise
        except RecursionError:
            raise format_error("the template is nested too deeply") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or "not well-formed"
            raise format_error(f"YAML not well-formed. ({problem}{where})") from None
    if not isinstance(doc, dict):
        raise format_error("unsupported structure.")
    _check_depth(doc, 0)
    return doc


def _check_depth(value, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise format_error(f"the template is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise format_error(f"every key must be a string; found {key!r}")
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise format_error(f"unsupported value {value!r}")


# -- checking -------------------------------------------------------------------------------------------


@dataclass
class Template:
    doc: dict
    parameters: dict = field(default_factory=dict)
    mappings: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    _graph: dict | None = field(default=None, repr=False, compare=False)

    @property
    def description(self) -> str | None:
        text = self.doc.get("Description")
        return text if isinstance(text, str) else None

    def dependencies(self, logical: str) -> set[str]:
        """The resources ``logical`` needs first: its Refs, GetAtts, Subs' resource variables and DependsOn."""
        resource = self.resources[logical]
        found = _references(resource.get("Properties", {}), self.resources)
        depends = resource.get("DependsOn", [])
        found.update([depends] if isinstance(depends, str) else depends)
        found.discard(logical)
        return found

    def graph(self) -> dict[str, set[str]]:
        """Each resource's dependencies among the template's resources (computed once)."""
        if self._graph is None:
            self._graph = {n: {d for d in self.dependencies(n) if d in self.resources} for n in self.resources}
        return self._graph

    def sorted(self) -> tuple[list[str], set[str]]:
        """(the resources in dependency order, in template order where free; those on or behind a cycle).

        Iterative (Kahn's algorithm), so a long DependsOn chain costs no recursion."""
        graph = self.graph()
        waiting = {n: set(deps) for n, deps in graph.items()}
        dependents: dict[str, list[str]] = {n: [] for n in graph}
        for name, deps in graph.items():
            for dep in deps:
                dependents[dep].append(name)
        position = {n: i for i, n in enumerate(graph)}
        ready = [(position[n], n) for n in graph if not waiting[n]]
        heapq.heapify(ready)
        done: list[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            done.append(name)
            for child in dependents[name]:
                waiting[child].discard(name)
                if not waiting[child]:
                    heapq.heappush(ready, (position[child], child))
        return done, set(graph) - set(done)

    def order(self, logicals) -> list[str]:
        """``logicals`` in an order where each comes after what it depends on (checked acyclic at reading)."""
        wanted = set(logicals)
        return [n for n in self.sorted()[0] if n in wanted]


def check(doc: dict) -> Template:
    """The template, checked as CloudFormation checks it before any work; ValidationError otherwise."""
    unknown = sorted(set(doc) - SECTIONS)
    if unknown:
        raise format_error(f"Invalid template property or properties {unknown}")
    if "Rules" in doc:
        raise format_error("Rules are not supported by SelfMaker's CloudFormation")
    if "Transform" in doc:
        raise format_error("Transform (macros, AWS::Serverless) is not supported by SelfMaker's CloudFormation")
    version = doc.get("AWSTemplateFormatVersion")
    if version is not None and str(version) != "2010-09-09":
        raise format_error(f"'{version}' is not a supported AWSTemplateFormatVersion value.")
    template = Template(
        doc=doc,
        parameters=_section(doc, "Parameters"),
        mappings=_section(doc, "Mappings"),
        conditions=_section(doc, "Conditions"),
        resources=_section(doc, "Resources"),
        outputs=_section(doc, "Outputs"),
    )
    if not template.resources:
        raise format_error("At least one Resources member must be defined.")
    if len(template.resources) > MAX_RESOURCES:
        raise AWSError("ValidationError", f"Template may not exceed {MAX_RESOURCES} Resources.")
    for name, parameter in template.parameters.items():
        _check_parameter(name, parameter)
    for name, resource in template.resources.items():
        _check_resource(name, resource)
    _check_references(template)
    _check_cycles(template)
    return template


def _section(doc: dict, name: str) -> dict:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise format_error(f"{name} must be an object")
    for key, item in value.items():
        if name != "Mappings" and not LOGICAL_ID.fullmatch(key):
            raise format_error(f"{name} name '{key}' is non alphanumeric.")
        if name != "Conditions" and not isinstance(item, dict):
            raise format_error(f"[/{name}/{key}] Every {name} member must be an object.")
    return value


def _check_parameter(name: str, parameter: dict) -> None:
    unknown = sorted(set(parameter) - PARAMETER_KEYS)
    if unknown:
        raise format_error(f"Invalid template parameter property '{unknown[0]}'")
    kind = parameter.get("Type")
    if kind is None:
        raise format_error(f"[/Parameters/{name}] 'Type' is a required property")
    if kind not in PARAMETER_TYPES:
        raise format_error(
            f"Unrecognized parameter type: {kind}. SelfMaker's CloudFormation takes {sorted(PARAMETER_TYPES)}."
        )
    allowed = parameter.get("AllowedValues")
    if allowed is not None and not isinstance(allowed, list):
        raise format_error(f"[/Parameters/{name}/AllowedValues] must be a list")
    pattern = parameter.get("AllowedPattern")
    if pattern is not None:
        try:
            re.compile(str(pattern))
        except re.error:
            raise format_error(f"[/Parameters/{name}/AllowedPattern] is not a valid pattern") from None


def _check_resource(name: str, resource: dict) -> None:
    unknown = sorted(set(resource) - RESOURCE_KEYS)
    if unknown:
        raise format_error(f"[/Resources/{name}] Invalid resource attribute {unknown}")
    kind = resource.get("Type")
    if not isinstance(kind, str) or not kind:
        raise format_error(f"[/Resources/{name}] Every Resources object must contain a Type member.")
    if not re.fullmatch(r"(AWS|Custom|Alexa)::[A-Za-z0-9]+(::[A-Za-z0-9]+)*|Custom::[\w@-]{1,60}", kind):
        raise format_error(f"Unrecognized resource types: [{kind}]")
    if not isinstance(resource.get("Properties", {}), dict):
        raise format_error(f"[/Resources/{name}/Properties] must be an object")
    depends = resource.get("DependsOn", [])
    if not isinstance(depends, str) and not (isinstance(depends, list) and all(isinstance(d, str) for d in depends)):
        raise format_error(f"[/Resources/{name}/DependsOn] must be a string or a list of strings")
    policy = resource.get("DeletionPolicy", "Delete")
    if policy not in ("Delete", "Retain", "RetainExceptOnCreate", "Snapshot"):
        raise format_error(f"[/Resources/{name}/DeletionPolicy] Unrecognized DeletionPolicy {policy}")


def _references(value, resources: dict) -> set[str]:
    """The resource logical ids a value reaches through Ref, Fn::GetAtt and Fn::Sub."""
    found: set[str] = set()

    def walk(v) -> None:
        if isinstance(v, dict):
            if len(v) == 1:
                ((key, arg),) = v.items()
                if key == "Ref" and isinstance(arg, str) and arg in resources:
                    found.add(arg)
                elif key == "Fn::GetAtt":
                    target = getatt_target(arg)
                    if target and target[0] in resources:
                        found.add(target[0])
                elif key == "Fn::Sub":
                    text = arg[0] if isinstance(arg, list) and arg else arg
                    names = (
                        set(arg[1]) if isinstance(arg, list) and len(arg) > 1 and isinstance(arg[1], dict) else set()
                    )
                    if isinstance(text, str):
                        for variable in SUB_VARIABLE.findall(text):
                            head = variable.split(".", 1)[0].strip()
                            if head in resources and head not in names:
                                found.add(head)
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return found


def getatt_target(arg) -> tuple[str, str] | None:
    if isinstance(arg, str):
        logical, _, attribute = arg.partition(".")
        return (logical, attribute) if attribute else None
    if isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg):
        return arg[0], arg[1]
    return None


def _check_references(template: Template) -> None:
    known = set(template.parameters) | set(template.resources) | PSEUDO_PARAMETERS
    unresolved: set[str] = set()
    for resource in template.resources.values():
        for dep in (
            resource.get("DependsOn", []) if not isinstance(resource.get("DependsOn"), str) else [resource["DependsOn"]]
        ):
            if dep not in template.resources:
                raise format_error(f"Unresolved resource dependencies [{dep}] in the Resources block of the template")
        condition = resource.get("Condition")
        if condition is not None and condition not in template.conditions:
            raise format_error(
                f"Unresolved dependencies [{condition}]. Cannot reference resources in the Conditions block of the template"
            )
        unresolved |= _bad_refs(resource.get("Properties", {}), known, template)
    in_conditions = _references(template.conditions, template.resources)
    if in_conditions:
        raise format_error(
            f"Unresolved dependencies [{', '.join(sorted(in_conditions))}]. "
            "Cannot reference resources in the Conditions block of the template"
        )
    for output in template.outputs.values():
        if "Value" not in output:
            raise format_error("Every Outputs member must contain a Value object")
        unresolved |= _bad_refs(output, known, template)
    if unresolved:
        raise format_error(
            f"Unresolved resource dependencies [{', '.join(sorted(unresolved))}] in the Resources block of the template"
        )


def _bad_refs(value, known: set[str], template: Template) -> set[str]:
    bad: set[str] = set()

    def walk(v) -> None:
        if isinstance(v, dict):
            if len(v) == 1:
                ((key, arg),) = v.items()
                if key == "Ref" and (not isinstance(arg, str) or arg not in known):
                    bad.add(str(arg))
                elif key == "Fn::GetAtt":
                    target = getatt_target(arg)
                    if target is None:
                        raise template_error("every Fn::GetAtt object requires two non-empty parameters.")
                    if target[0] not in template.resources:
                        raise template_error(f"instance of Fn::GetAtt references undefined resource {target[0]}")
                elif key == "Fn::If":
                    if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
                        raise template_error("Fn::If requires a list of three arguments")
                    if arg[0] not in template.conditions:
                        raise template_error(f"unresolved condition dependency {arg[0]} in Fn::If")
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return bad


def _check_cycles(template: Template) -> None:
    _, stuck = template.sorted()
    if not stuck:
        return
    # What is left waits on a cycle or is on one: prune those that nothing left depends on, down to the cycles.
    graph = template.graph()
    while True:
        needed = {d for n in stuck for d in graph[n] if d in stuck}
        pruned = stuck & needed
        if pruned == stuck:
            break
        stuck = pruned
    raise format_error(f"Circular dependency between resources: [{', '.join(sorted(stuck))}]")


@lru_cache(maxsize=64)
def load(body: str) -> Template:
    """A stored stack's template, checked (it was when the stack took it), cached: every step reads it."""
    return check(parse(body, MAX_URL_BYTES))
