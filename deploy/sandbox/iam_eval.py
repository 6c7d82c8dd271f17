"""IAM identity-policy evaluation, for the emulator's front (``moto_front.py``).

moto ignores IAM. The front asks this module whether one authorization request, an
``(action, resource ARN, condition context)`` triple as AWS builds it for an API call (see
``iam_calls.py``), is allowed by a principal's identity policy. It follows the IAM User Guide
("Policy evaluation logic", "IAM JSON policy elements"):

* A statement applies when its ``Action`` (or ``NotAction``), ``Resource`` (or ``NotResource``)
  and every part of its ``Condition`` match. An applicable ``Deny`` wins over any ``Allow``;
  with no applicable ``Allow`` the request is implicitly denied.
* Actions match case-insensitively, with ``*`` (any run) and ``?`` (one character).
* Resources are ARNs, matched case-sensitively per colon-separated segment (the sixth,
  the resource part, may hold colons itself): ``*`` and ``?`` never span a segment. A
  statement resource of just ``*`` matches everything, and a request resource of ``*`` (an
  action with no resource type) matches only that.
* Conditions: every operator of a block, and every key of an operator, must hold (AND); a key's
  values are alternatives (OR). Operators: ``StringEquals``, ``StringNotEquals``,
  ``StringEqualsIgnoreCase``, ``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike``,
  ``ArnEquals``, ``ArnLike``, ``ArnNotEquals``, ``ArnNotLike``, ``Null``, ``Bool``,
  ``IpAddress``, ``NotIpAddress`` (addresses in CIDR blocks) and the
  ``Numeric…`` family, each also as ``…IfExists`` (true when the key is absent) and with
  ``ForAnyValue:`` / ``ForAllValues:`` for multivalued keys (``aws:TagKeys``). A key absent
  from the context fails a positive operator and satisfies a negated one (``…Not…``), as the
  guide describes; ``Null`` tests presence itself. Condition key names are case-insensitive.

Policy variables in condition values (``${aws:SourceVpc}``) are resolved from the request; one
whose key the request lacks makes its condition match nothing (so a ``Deny`` comparing
``aws:ec2InstanceSourceVPC`` with ``${aws:SourceVpc}`` does not apply to a call that came
through no endpoint).

Anything else in a policy (``Principal``, policy variables in resources, ``Date…`` operators) is refused
when the policy is loaded (``validate``), so a test never passes on a policy half understood.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "allow", "explicit-deny", "implicit-deny"

_STRING_OPS = {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
               "StringLike", "StringNotLike"}
_ARN_OPS = {"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
_NUMERIC_OPS = {"NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
                "NumericGreaterThan", "NumericGreaterThanEquals"}
OPERATORS = _STRING_OPS | _ARN_OPS | _NUMERIC_OPS | {"Null", "Bool", "IpAddress", "NotIpAddress"}


@dataclass
class Request:
    """One authorization request: what AWS evaluates for (part of) an API call."""

    action: str  # "ec2:RunInstances"
    resource: str  # an ARN, or "*" for an action with no resource type
    context: dict[str, list[str]] = field(default_factory=dict)  # condition key -> values

    def describe(self) -> str:
        return f"{self.action} on {self.resource}"


@dataclass
class Decision:
    outcome: str  # ALLOW, EXPLICIT_DENY or IMPLICIT_DENY
    statement: str | None = None  # the Sid (or index) of the deciding statement

    @property
    def allowed(self) -> bool:
        return self.outcome == ALLOW


def statements(policy: dict) -> list[dict]:
    found = policy.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def _list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def validate(policy: dict) -> None:
    """Raises ValueError naming what this evaluator does not understand in ``policy``."""
    if not isinstance(policy, dict) or "Statement" not in policy:
        raise ValueError("a policy document needs a Statement")
    for index, st in enumerate(statements(policy)):
        name = st.get("Sid", f"#{index}")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise ValueError(f"statement {name}: Effect must be Allow or Deny")
        if ("Action" in st) == ("NotAction" in st):
            raise ValueError(f"statement {name}: exactly one of Action and NotAction")
        if ("Resource" in st) == ("NotResource" in st):
            raise ValueError(f"statement {name}: exactly one of Resource and NotResource")
        for unsupported in ("Principal", "NotPrincipal"):
            if unsupported in st:
                raise ValueError(f"statement {name}: {unsupported} has no place in an identity policy")
        for text in _list(st.get("Resource")) + _list(st.get("NotResource")):
            if "${" in text:
                raise ValueError(f"statement {name}: policy variables are not supported ({text})")
        for operator in (st.get("Condition") or {}):
            if _split_operator(operator)[1] not in OPERATORS:
                raise ValueError(f"statement {name}: condition operator {operator} is not supported")


def evaluate(policy: dict, request: Request) -> Decision:
    """The decision of one identity policy on one request."""
    context = {k.lower(): [str(v) for v in _list(vals)] for k, vals in request.context.items()}
    allowed_by = None
    for index, st in enumerate(statements(policy)):
        if not _applies(st, request, context):
            continue
        sid = st.get("Sid", f"#{index}")
        if st["Effect"] == "Deny":
            return Decision(EXPLICIT_DENY, sid)
        allowed_by = allowed_by or sid
    return Decision(ALLOW, allowed_by) if allowed_by else Decision(IMPLICIT_DENY)


def _applies(st: dict, request: Request, context: dict[str, list[str]]) -> bool:
    if "Action" in st:
        if not any(glob(p, request.action, ignore_case=True) for p in _list(st["Action"])):
            return False
    elif any(glob(p, request.action, ignore_case=True) for p in _list(st["NotAction"])):
        return False
    if "Resource" in st:
        if not any(resource_matches(p, request.resource) for p in _list(st["Resource"])):
            return False
    elif any(resource_matches(p, request.resource) for p in _list(st["NotResource"])):
        return False
    return all(_condition(op, keys, context) for op, keys in (st.get("Condition") or {}).items())


# ---- matching -------------------------------------------------------------------------------
_GLOB_CACHE: dict[tuple[str, bool], re.Pattern] = {}


def glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: ``*`` any run of characters, ``?`` exactly one."""
    key = (pattern, ignore_case)
    compiled = _GLOB_CACHE.get(key)
    if compiled is None:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        compiled = re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        _GLOB_CACHE[key] = compiled
    return compiled.fullmatch(value) is not None


def arn_matches(pattern: str, arn: str) -> bool:
    """ARN matching (Resource, ArnLike, ArnEquals): each of the six colon-separated segments on
    its own, so a wildcard never spans a segment."""
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(glob(p, a) for p, a in zip(pattern_parts, arn_parts))


def resource_matches(pattern: str, resource: str) -> bool:
    if pattern == "*":
        return True
    if resource == "*":
        return False
    return arn_matches(pattern, resource)


# ---- conditions -----------------------------------------------------------------------------
def _split_operator(operator: str) -> tuple[str | None, str, bool]:
    """``ForAnyValue:StringLikeIfExists`` -> (``ForAnyValue``, ``StringLike``, True)."""
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    return qualifier, operator, if_exists


def _condition(operator: str, keys: dict, context: dict[str, list[str]]) -> bool:
    qualifier, base, if_exists = _split_operator(operator)
    return all(_key_holds(qualifier, base, if_exists, key, _list(wanted), context.get(key.lower()), context)
               for key, wanted in keys.items())


def _resolve(wanted: list[str], context: dict[str, list[str]]) -> list[str] | None:
    """Condition values with policy variables (``${aws:SourceVpc}``) resolved from the request;
    None when one names a key the request lacks (IAM then lets the condition match nothing)."""
    out = []
    for w in wanted:
        for name in re.findall(r"\$\{([^}]+)\}", w):
            values = context.get(name.lower())
            if not values:
                return None
            w = w.replace("${" + name + "}", values[0])
        out.append(w)
    return out


def _key_holds(qualifier, base, if_exists, key, wanted, present, context=None) -> bool:
    wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in wanted]
    if context is not None and any("${" in w for w in wanted):
        resolved = _resolve(wanted, context)
        if resolved is None:
            return False
        wanted = resolved
    if base == "Null":
        is_null = not present
        return any((w.lower() == "true") == is_null for w in wanted)
    negated = "Not" in base
    if present is None or (qualifier is None and not present):
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated
    positive = base.replace("Not", "", 1) if negated else base

    def one_matches(value: str) -> bool:
        return any(_compare(positive, w, value) for w in wanted)

    if qualifier == "ForAllValues":
        result = all(one_matches(v) for v in present)
        return (not result) if negated else result
    if qualifier == "ForAnyValue":
        result = any(one_matches(v) for v in present)
        return (not result) if negated else result
    # A single-valued key: its one value (the first) against the alternatives.
    result = one_matches(present[0])
    return (not result) if negated else result


def _compare(operator: str, wanted: str, value: str) -> bool:
    if operator == "StringEquals":
        return wanted == value
    if operator == "StringEqualsIgnoreCase":
        return wanted.lower() == value.lower()
    if operator == "StringLike":
        return glob(wanted, value)
    if operator in ("ArnEquals", "ArnLike"):
        return arn_matches(wanted, value)
    if operator == "Bool":
        return wanted.lower() == value.lower()
    if operator == "IpAddress":
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network(wanted, strict=False)
        except ValueError:
            return False
    if operator.startswith("Numeric"):
        try:
            a, b = float(value), float(wanted)
        except ValueError:
            return False
        return {"NumericEquals": a == b, "NumericLessThan": a < b, "NumericLessThanEquals": a <= b,
                "NumericGreaterThan": a > b, "NumericGreaterThanEquals": a >= b}[operator]
    raise ValueError(f"condition operator {operator} is not supported")
