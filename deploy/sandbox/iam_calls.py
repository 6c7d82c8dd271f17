"""What AWS authorizes for an API call: the front's table from call to authorization requests.

For each call the bot makes, the ``(action, resource ARN, condition context)`` requests AWS
evaluates, after the Service Authorization Reference (SAR: each action's resource types and
condition keys) and the services' guides where the SAR is silent. ``moto_front.py`` evaluates
them (``iam_eval.py``) against the enforced policy and refuses the call if any is denied.
Resources are read from moto's own state where AWS would read them (a role's path and
boundary, an instance's tags, an instance profile's role).

EC2 (``ec2:Region`` on every request):

* ``Describe*`` and any other EC2 action not listed here: ``*`` (the SAR lists no resource
  type for the Describe actions).
* ``RunInstances`` (DryRun too): ``instance/*`` (request tags of the ``instance`` tag
  specification as ``aws:RequestTag/K`` and ``aws:TagKeys``; ``ec2:InstanceType``,
  ``ec2:InstanceMarketType``, ``ec2:InstanceProfile``, ``ec2:Metadata…``,
  ``ec2:AvailabilityZone``), ``volume/*`` (its tag specification's tags),
  ``spot-instances-request/*`` (only with ``InstanceMarketOptions.MarketType=spot``; its tags),
  ``network-interface/*`` (``ec2:Subnet``, ``ec2:Vpc``), the ``subnet/ID`` (the default VPC's
  first subnet when none is given), each ``security-group/ID`` (``SecurityGroupId.N``, names
  resolved in the VPC, else the VPC's ``default`` group; ``ec2:ResourceTag/K``), the AMI as
  ``arn:…:ec2:REGION::image/ami-…``, and ``key-pair``/``launch-template``/``placement-group``
  when named. Then ``ec2:CreateTags`` on ``TYPE/*`` for each tagged type, with
  ``ec2:CreateAction=RunInstances``; ``iam:PassRole`` on the instance profile's role
  (``iam:PassedToService=ec2.amazonaws.com``, ``iam:AssociatedResourceArn``); and, for a spot
  launch while the account has no ``AWSServiceRoleForEC2Spot``, ``iam:CreateServiceLinkedRole``
  on it with ``iam:AWSServiceName=spot.amazonaws.com`` (EC2 creates that role on first use).
* ``TerminateInstances``: each ``instance/ID`` with ``ec2:ResourceTag/K`` (and
  ``aws:ResourceTag/K``) from moto's tags. Ids EC2 does not know (yet) are left to EC2's own
  ``InvalidInstanceID.NotFound``.
* ``CreateSecurityGroup``: ``security-group/*`` (request tags) and the ``vpc/ID``; with tags
  also ``ec2:CreateTags`` (``ec2:CreateAction=CreateSecurityGroup``). ``CreateTags``: each
  resource by its id's prefix, with its current and requested tags.

IAM (IAM's own ARNs carry the entity's path, read from moto; ``CreateRole`` and
``CreateInstanceProfile`` take it from the request's ``Path``):

* ``CreateRole``: ``role`` with ``iam:PermissionsBoundary`` (the request's) and the request
  tags; with ``Tags`` also ``iam:TagRole``. ``CreateInstanceProfile``: ``instance-profile``;
  with ``Tags`` also ``iam:TagInstanceProfile``.
* ``PutRolePolicy`` / ``DeleteRolePolicy``: ``role`` with ``iam:PermissionsBoundary`` (the
  role's own); ``AttachRolePolicy`` / ``DetachRolePolicy`` also ``iam:PolicyARN``.
* ``AddRoleToInstanceProfile``: ``instance-profile`` and ``iam:PassRole`` on the role
  (the IAM API reference: "The caller of this operation must be granted the PassRole
  permission on the IAM role"), ``iam:PassedToService=ec2.amazonaws.com``.
* Any other action naming ``RoleName`` (after the above): ``role`` (``iam:ResourceTag/K``);
  ``InstanceProfileName``: ``instance-profile``; ``PolicyArn``: that policy. ``TagRole`` /
  ``TagInstanceProfile`` add the request tags. ``ListRoles``, ``ListInstanceProfiles`` and the
  rest: ``*``.
* An entity that does not exist has no path to read: its request is marked ``missing`` and
  built with the default path ``/`` (the front decides what to do with it).

ECS: ``DescribeClusters`` each ``cluster/NAME``; ``DescribeServices`` each
``service/CLUSTER/NAME``, ``DescribeTasks`` each ``task/CLUSTER/ID`` (ARNs as given), both with
``ecs:cluster``; ``ListTasks`` and ``ListServices``: ``*`` with ``ecs:cluster`` (the
``container-instance`` when one is named); ``DescribeTaskDefinition`` and the rest: ``*``.

SSM: ``GetParameter(s)``: ``parameter/NAME`` (no account for AWS's public ``/aws/service/…``);
``SendCommand``: the ``document/NAME`` (no account for AWS's own documents, whose names start
with ``AWS``/``Amazon``) and each ``ec2 instance/ID`` of ``InstanceIds`` with
``ssm:resourceTag/K`` (``instance/*`` for ``Targets``); ``GetDocument``/``DescribeDocument``:
the document; ``TerminateSession``: ``session/ID``; ``Describe*``, ``List*``,
``GetCommandInvocation`` and the rest: ``*``.

STS ``GetCallerIdentity`` needs no permission. Every request also carries
``aws:RequestedRegion``, ``aws:PrincipalAccount``, ``aws:PrincipalArn`` and
``aws:SecureTransport``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from iam_eval import Request

SPOT_SERVICE = "spot.amazonaws.com"
SPOT_ROLE = "AWSServiceRoleForEC2Spot"
EC2_SERVICE = "ec2.amazonaws.com"
AWS_OWNED_PREFIXES = ("aws", "amazon", "amzn")


@dataclass
class Auth(Request):
    """An authorization request, and whether it names an IAM entity that does not exist."""

    missing: bool = False


@dataclass
class Call:
    """One API call as the front sees it."""

    service: str  # the SigV4 scope: ec2, iam, ecs, ssm, sts
    action: str
    params: dict  # query protocol: {name: [values]}; JSON protocol: the body
    account: str
    region: str
    principal_arn: str
    hidden_instance: callable = field(default=lambda _id: False)
    hidden_profile: callable = field(default=lambda _name: False)

    def one(self, name, default=None):
        value = self.params.get(name, default)
        return value[0] if isinstance(value, list) and value else (default if isinstance(value, list) else value)

    def numbered(self, prefix) -> list[str]:
        """``Prefix.1``, ``Prefix.2``… (query protocol), in order."""
        found = []
        for key, values in self.params.items():
            rest = key[len(prefix) + 1:] if key.startswith(prefix + ".") else ""
            if rest.isdigit():
                found.append((int(rest), values[0]))
        return [v for _, v in sorted(found)]


def authorizations(call: Call) -> list[Auth]:
    """The authorization requests AWS evaluates for ``call``, in the order they are reported."""
    base = {"aws:RequestedRegion": [call.region], "aws:PrincipalAccount": [call.account],
            "aws:PrincipalArn": [call.principal_arn], "aws:SecureTransport": ["true"]}
    derive = {"ec2": _ec2, "iam": _iam, "ecs": _ecs, "ssm": _ssm, "sts": _sts}.get(call.service)
    found = derive(call) if derive else [Auth(f"{call.service}:{call.action}", "*")]
    for auth in found:
        auth.context = dict(base, **auth.context)
    return found


# ---- moto's state ---------------------------------------------------------------------------
def _ec2_backend(call):
    from moto.ec2.models import ec2_backends

    return ec2_backends[call.account][call.region]


def _iam_backend(call):
    from moto.iam.models import iam_backends

    return iam_backends[call.account]["aws"]


def _find(items, predicate):
    return next((item for item in items if predicate(item)), None)


def _role(call, name):
    return _find(_iam_backend(call).get_roles(), lambda r: r.name == name)


def _profile(call, name=None, arn=None):
    return _find(_iam_backend(call).get_instance_profiles(),
                 lambda p: p.name == name if name is not None else p.arn == arn)


def _instance(call, instance_id):
    try:
        return _ec2_backend(call).get_instance(instance_id)
    except Exception:  # noqa: BLE001 - moto's InvalidInstanceID: EC2 answers that itself
        return None


def _ec2_tags(call, resource_id) -> dict[str, str]:
    return {t["key"]: t["value"] for t in _ec2_backend(call).describe_tags(filters={"resource-id": [resource_id]})}


def spot_role_exists(account) -> bool:
    from moto.iam.models import iam_backends

    return any(r.name == SPOT_ROLE for r in iam_backends[account]["aws"].get_roles())


def create_spot_role(account) -> None:
    """What EC2 does on an account's first spot launch: creates ``AWSServiceRoleForEC2Spot``."""
    from moto.iam.models import iam_backends

    if spot_role_exists(account):
        return
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": [SPOT_SERVICE]}, "Action": ["sts:AssumeRole"]}]}
    iam_backends[account]["aws"].create_role(
        SPOT_ROLE, json.dumps(trust), f"/aws-service-role/{SPOT_SERVICE}/", permissions_boundary=None,
        description="Default EC2 Spot Service Linked Role", tags=[], max_session_duration="3600",
        linked_service=SPOT_SERVICE)


# ---- helpers --------------------------------------------------------------------------------
def _tag_context(tags: dict[str, str], prefix: str) -> dict[str, list[str]]:
    return {f"{prefix}/{k}": [v] for k, v in tags.items()}


def _request_tags(tags: dict[str, str]) -> dict[str, list[str]]:
    context = _tag_context(tags, "aws:RequestTag")
    if tags:
        context["aws:TagKeys"] = list(tags)
    return context


def _resource_tags(tags: dict[str, str], service_prefix: str) -> dict[str, list[str]]:
    return dict(_tag_context(tags, "aws:ResourceTag"), **_tag_context(tags, f"{service_prefix}:ResourceTag"))


# ---- EC2 ------------------------------------------------------------------------------------
def _ec2(call: Call) -> list[Auth]:
    arn = f"arn:aws:ec2:{call.region}:{call.account}"
    region = {"ec2:Region": [call.region]}
    if call.action == "RunInstances":
        return _run_instances(call, arn, region)
    if call.action == "TerminateInstances":
        found = []
        for instance_id in call.numbered("InstanceId"):
            instance = _instance(call, instance_id)
            if instance is None or call.hidden_instance(instance_id):
                continue  # EC2 answers InvalidInstanceID.NotFound
            context = dict(region, **_instance_context(call, instance))
            found.append(Auth("ec2:TerminateInstances", f"{arn}:instance/{instance_id}", context))
        return found
    if call.action == "CreateSecurityGroup":
        tags = _tag_specifications(call).get("security-group", {})
        vpc = call.one("VpcId") or getattr(_ec2_backend(call).get_default_vpc(), "id", "")
        found = [Auth("ec2:CreateSecurityGroup", f"{arn}:security-group/*", dict(region, **_request_tags(tags))),
                 Auth("ec2:CreateSecurityGroup", f"{arn}:vpc/{vpc}",
                      dict(region, **{"ec2:VpcID": [vpc]}, **_resource_tags(_ec2_tags(call, vpc), "ec2")))]
        if tags:
            found.append(Auth("ec2:CreateTags", f"{arn}:security-group/*",
                              dict(region, **{"ec2:CreateAction": ["CreateSecurityGroup"]}, **_request_tags(tags))))
        return found
    if call.action == "CreateTags":
        keys, values = _numbered_pairs(call, "Tag", "Key"), _numbered_pairs(call, "Tag", "Value")
        tags = {k: values.get(n, "") for n, k in keys.items()}
        return [Auth("ec2:CreateTags", _ec2_arn(call, arn, rid),
                     dict(region, **_request_tags(tags), **_resource_tags(_ec2_tags(call, rid), "ec2")))
                for rid in call.numbered("ResourceId")]
    return [Auth(f"ec2:{call.action}", "*", region)]


def _numbered_pairs(call, prefix, leaf) -> dict[int, str]:
    """``Prefix.N.Leaf`` -> {N: value}."""
    found = {}
    for key, values in call.params.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == prefix and parts[2] == leaf and parts[1].isdigit():
            found[int(parts[1])] = values[0]
    return found


def _ec2_arn(call, arn, resource_id) -> str:
    kinds = {"i": "instance", "vol": "volume", "sg": "security-group", "sir": "spot-instances-request",
             "subnet": "subnet", "vpc": "vpc", "eni": "network-interface", "snap": "snapshot"}
    kind = resource_id.split("-", 1)[0]
    if kind == "ami":
        return f"arn:aws:ec2:{call.region}::image/{resource_id}"
    return f"{arn}:{kinds.get(kind, kind)}/{resource_id}"


def _tag_specifications(call) -> dict[str, dict[str, str]]:
    """``TagSpecification.N.ResourceType`` / ``.Tag.M.Key|Value`` -> {resource type: tags}."""
    specs: dict[int, dict] = {}
    for key, values in call.params.items():
        parts = key.split(".")
        if parts[0] != "TagSpecification" or len(parts) < 3 or not parts[1].isdigit():
            continue
        spec = specs.setdefault(int(parts[1]), {"type": None, "keys": {}, "values": {}})
        if parts[2] == "ResourceType":
            spec["type"] = values[0]
        elif parts[2] == "Tag" and len(parts) == 5 and parts[3].isdigit():
            spec["keys" if parts[4] == "Key" else "values"][int(parts[3])] = values[0]
    out: dict[str, dict[str, str]] = {}
    for _, spec in sorted(specs.items()):
        if spec["type"]:
            tags = out.setdefault(spec["type"], {})
            tags.update({k: spec["values"].get(n, "") for n, k in sorted(spec["keys"].items())})
    return out


def _instance_context(call, instance) -> dict[str, list[str]]:
    context = _resource_tags(_ec2_tags(call, instance.id), "ec2")
    context["ec2:InstanceID"] = [instance.id]
    context["ec2:InstanceType"] = [instance.instance_type]
    context["ec2:InstanceMarketType"] = ["spot" if getattr(instance, "lifecycle", None) == "spot" else "on-demand"]
    zone = getattr(getattr(instance, "placement", None), "zone", None)
    if isinstance(zone, str):
        context["ec2:AvailabilityZone"] = [zone]
    association = _ec2_backend(call).iam_instance_profile_associations.get(instance.id)
    profile_arn = getattr(getattr(association, "iam_instance_profile", None), "arn", None)
    if profile_arn:
        context["ec2:InstanceProfile"] = [profile_arn]
    return context


def _run_instances(call: Call, arn: str, region: dict) -> list[Auth]:
    ec2 = _ec2_backend(call)
    tags = _tag_specifications(call)
    spot = (call.one("InstanceMarketOptions.MarketType") or "").lower() == "spot"

    subnet_id = call.one("SubnetId")
    subnet = None
    if subnet_id:
        try:
            subnet = ec2.get_subnet(subnet_id)
        except Exception:  # noqa: BLE001 - EC2 answers InvalidSubnetID.NotFound itself
            subnet = None
    else:
        vpc = ec2.get_default_vpc()
        subnets = sorted((s for s in ec2.describe_subnets() if vpc and s.vpc_id == vpc.id),
                         key=lambda s: s.availability_zone)
        subnet = subnets[0] if subnets else None
        subnet_id = subnet.id if subnet else ""
    vpc_id = subnet.vpc_id if subnet else ""
    zone = subnet.availability_zone if subnet else ""
    vpc_arn = f"{arn}:vpc/{vpc_id}"

    profile_arn = call.one("IamInstanceProfile.Arn")
    profile_name = call.one("IamInstanceProfile.Name") or (profile_arn.rsplit("/", 1)[-1] if profile_arn else None)
    profile = None
    if profile_name and not call.hidden_profile(profile_name):
        profile = _profile(call, arn=profile_arn) if profile_arn else _profile(call, name=profile_name)

    instance = dict(region, **_request_tags(tags.get("instance", {})))
    instance.update({
        "ec2:InstanceType": [call.one("InstanceType") or "m1.small"],
        "ec2:InstanceMarketType": ["spot" if spot else "on-demand"],
        "ec2:AvailabilityZone": [zone],
        "ec2:Tenancy": [call.one("Placement.Tenancy") or "default"],
        "ec2:RootDeviceType": ["ebs"],
        "ec2:EbsOptimized": [str(call.one("EbsOptimized") or "false").lower()],
    })
    if profile is not None:
        instance["ec2:InstanceProfile"] = [profile.arn]
    for param, key in (("MetadataOptions.HttpTokens", "ec2:MetadataHttpTokens"),
                       ("MetadataOptions.HttpEndpoint", "ec2:MetadataHttpEndpoint"),
                       ("MetadataOptions.HttpPutResponseHopLimit", "ec2:MetadataHttpPutResponseHopLimit")):
        if call.one(param):
            instance[key] = [call.one(param)]
    found = [Auth("ec2:RunInstances", f"{arn}:instance/*", instance),
             Auth("ec2:RunInstances", f"{arn}:volume/*", dict(region, **_request_tags(tags.get("volume", {}))))]
    if spot:
        found.append(Auth("ec2:RunInstances", f"{arn}:spot-instances-request/*",
                          dict(region, **_request_tags(tags.get("spot-instances-request", {})))))
    found.append(Auth("ec2:RunInstances", f"{arn}:network-interface/*",
                      dict(region, **_request_tags(tags.get("network-interface", {})),
                           **{"ec2:Subnet": [f"{arn}:subnet/{subnet_id}"], "ec2:Vpc": [vpc_arn],
                              "ec2:AvailabilityZone": [zone]})))
    found.append(Auth("ec2:RunInstances", f"{arn}:subnet/{subnet_id}",
                      dict(region, **(_resource_tags(_ec2_tags(call, subnet_id), "ec2") if subnet_id else {}),
                           **{"ec2:SubnetID": [subnet_id], "ec2:Vpc": [vpc_arn], "ec2:AvailabilityZone": [zone]})))
    for group_id in _launch_groups(call, ec2, vpc_id):
        found.append(Auth("ec2:RunInstances", f"{arn}:security-group/{group_id}",
                          dict(region, **_resource_tags(_ec2_tags(call, group_id), "ec2"),
                               **{"ec2:SecurityGroupID": [group_id], "ec2:Vpc": [vpc_arn]})))
    image = call.one("ImageId") or ""
    found.append(Auth("ec2:RunInstances", f"arn:aws:ec2:{call.region}::image/{image}",
                      dict(region, **{"ec2:ImageID": [image], "ec2:ImageType": ["machine"],
                                      "ec2:RootDeviceType": ["ebs"]})))
    if call.one("KeyName"):
        found.append(Auth("ec2:RunInstances", f"{arn}:key-pair/{call.one('KeyName')}", dict(region)))
    template = call.one("LaunchTemplate.LaunchTemplateId") or call.one("LaunchTemplate.LaunchTemplateName")
    if template:
        found.append(Auth("ec2:RunInstances", f"{arn}:launch-template/{template}", dict(region)))
    if call.one("Placement.GroupName"):
        found.append(Auth("ec2:RunInstances", f"{arn}:placement-group/{call.one('Placement.GroupName')}", dict(region)))
    for kind, kind_tags in tags.items():
        found.append(Auth("ec2:CreateTags", f"{arn}:{kind}/*",
                          dict(region, **{"ec2:CreateAction": ["RunInstances"]}, **_request_tags(kind_tags))))
    role = profile.roles[0] if profile is not None and profile.roles else None
    if role is not None:
        found.append(Auth("iam:PassRole", role.arn, {
            "iam:PassedToService": [EC2_SERVICE],
            "iam:AssociatedResourceArn": [f"{arn}:instance/*"],
        }))
    if spot and not spot_role_exists(call.account):
        found.append(Auth("iam:CreateServiceLinkedRole",
                          f"arn:aws:iam::{call.account}:role/aws-service-role/{SPOT_SERVICE}/{SPOT_ROLE}",
                          {"iam:AWSServiceName": [SPOT_SERVICE]}))
    return found


def _launch_groups(call, ec2, vpc_id) -> list[str]:
    """The security groups of a launch: ``SecurityGroupId.N``, ``SecurityGroup.N`` (names, in the
    VPC), else the VPC's default group."""
    ids = call.numbered("SecurityGroupId")
    names = call.numbered("SecurityGroup")
    if ids and not names:
        return ids
    groups = [g for by_vpc in list(ec2.groups.values()) for g in list(by_vpc.values())]
    for name in names:
        match = _find(groups, lambda g, n=name: g.name == n and g.vpc_id == vpc_id)
        ids.append(match.id if match else name)
    if not ids:
        default = _find(groups, lambda g: g.name == "default" and g.vpc_id == vpc_id)
        if default is not None:
            ids.append(default.id)
    return ids


# ---- IAM ------------------------------------------------------------------------------------
def _iam_tags(call) -> dict[str, str]:
    keys, values = _numbered_pairs_member(call, "Tags", "Key"), _numbered_pairs_member(call, "Tags", "Value")
    return {k: values.get(n, "") for n, k in sorted(keys.items())}


def _numbered_pairs_member(call, prefix, leaf) -> dict[int, str]:
    """``Prefix.member.N.Leaf`` -> {N: value}."""
    found = {}
    for key, values in call.params.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == prefix and parts[1] == "member" and parts[3] == leaf and parts[2].isdigit():
            found[int(parts[2])] = values[0]
    return found


def _role_auth(call, action, name, context=None) -> Auth:
    role = _role(call, name)
    path = role.path if role is not None else "/"
    context = dict(context or {})
    if role is not None:
        tags = {t["Key"]: t["Value"] for t in role.tags}
        context.update(_tag_context(tags, "aws:ResourceTag"), **_tag_context(tags, "iam:ResourceTag"))
    return Auth(action, f"arn:aws:iam::{call.account}:role{path}{name}", context, missing=role is None)


def _profile_auth(call, action, name, context=None) -> Auth:
    profile = _profile(call, name=name)
    path = profile.path if profile is not None else "/"
    context = dict(context or {})
    if profile is not None:
        context.update(_tag_context({t["Key"]: t["Value"] for t in profile.tags}, "aws:ResourceTag"))
    return Auth(action, f"arn:aws:iam::{call.account}:instance-profile{path}{name}", context,
                missing=profile is None)


def _boundary_of(call, name) -> dict[str, list[str]]:
    role = _role(call, name)
    boundary = getattr(role, "permissions_boundary_arn", None) if role is not None else None
    return {"iam:PermissionsBoundary": [boundary]} if boundary else {}


def _iam(call: Call) -> list[Auth]:
    action, account = f"iam:{call.action}", call.account
    role_name, profile_name = call.one("RoleName"), call.one("InstanceProfileName")
    tags = _iam_tags(call)
    if call.action == "CreateRole":
        context = _request_tags(tags)
        if call.one("PermissionsBoundary"):
            context["iam:PermissionsBoundary"] = [call.one("PermissionsBoundary")]
        resource = f"arn:aws:iam::{account}:role{call.one('Path') or '/'}{role_name}"
        found = [Auth(action, resource, context)]
        if tags:
            found.append(Auth("iam:TagRole", resource, _request_tags(tags)))
        return found
    if call.action == "CreateInstanceProfile":
        resource = f"arn:aws:iam::{account}:instance-profile{call.one('Path') or '/'}{profile_name}"
        found = [Auth(action, resource, _request_tags(tags))]
        if tags:
            found.append(Auth("iam:TagInstanceProfile", resource, _request_tags(tags)))
        return found
    if call.action == "AddRoleToInstanceProfile":
        return [_profile_auth(call, action, profile_name),
                _role_auth(call, "iam:PassRole", role_name, {
                    "iam:PassedToService": [EC2_SERVICE],
                    "iam:AssociatedResourceArn": [f"arn:aws:ec2:*:{account}:instance/*"]})]
    if call.action == "RemoveRoleFromInstanceProfile":
        return [_profile_auth(call, action, profile_name)]
    if call.action in ("PutRolePolicy", "DeleteRolePolicy"):
        return [_role_auth(call, action, role_name, _boundary_of(call, role_name))]
    if call.action in ("AttachRolePolicy", "DetachRolePolicy"):
        context = dict(_boundary_of(call, role_name), **{"iam:PolicyARN": [call.one("PolicyArn") or ""]})
        return [_role_auth(call, action, role_name, context)]
    if call.action in ("PutRolePermissionsBoundary",):
        return [_role_auth(call, action, role_name, {"iam:PermissionsBoundary": [call.one("PermissionsBoundary")]})]
    if call.action == "CreateServiceLinkedRole":
        service = call.one("AWSServiceName") or ""
        name = SPOT_ROLE if service == SPOT_SERVICE else f"AWSServiceRoleFor{service.split('.')[0].capitalize()}"
        return [Auth(action, f"arn:aws:iam::{account}:role/aws-service-role/{service}/{name}",
                     {"iam:AWSServiceName": [service]})]
    extra = _request_tags(tags) if call.action in ("TagRole", "TagInstanceProfile") else {}
    if role_name:
        return [_role_auth(call, action, role_name, extra)]
    if profile_name:
        return [_profile_auth(call, action, profile_name, extra)]
    if call.one("PolicyArn"):
        return [Auth(action, call.one("PolicyArn"))]
    return [Auth(action, "*")]


# ---- ECS ------------------------------------------------------------------------------------
def _ecs(call: Call) -> list[Auth]:
    arn = f"arn:aws:ecs:{call.region}:{call.account}"
    action = f"ecs:{call.action}"

    def cluster_arn(value) -> str:
        return value if value.startswith("arn:") else f"{arn}:cluster/{value}"

    cluster = cluster_arn(call.params.get("cluster") or "default")
    cluster_name = cluster.split(":cluster/", 1)[-1]
    in_cluster = {"ecs:cluster": [cluster]}

    def named(kind, value) -> str:
        return value if value.startswith("arn:") else f"{arn}:{kind}/{cluster_name}/{value}"

    if call.action == "DescribeClusters":
        return [Auth(action, cluster_arn(c)) for c in (call.params.get("clusters") or ["default"])]
    if call.action == "DescribeServices":
        return [Auth(action, named("service", s), in_cluster) for s in call.params.get("services") or []]
    if call.action == "DescribeTasks":
        return [Auth(action, named("task", t), in_cluster) for t in call.params.get("tasks") or []]
    if call.action in ("ListTasks", "ListServices"):
        instance = call.params.get("containerInstance")
        return [Auth(action, named("container-instance", instance) if instance else "*", in_cluster)]
    return [Auth(action, "*")]


# ---- SSM ------------------------------------------------------------------------------------
def _ssm(call: Call) -> list[Auth]:
    arn = f"arn:aws:ssm:{call.region}:{call.account}"
    action = f"ssm:{call.action}"

    def parameter(name) -> str:
        if name.startswith("arn:"):
            return name
        bare = name.lstrip("/")
        owner = "" if bare.startswith("aws/service/") else call.account
        return f"arn:aws:ssm:{call.region}:{owner}:parameter/{bare}"

    def document(name) -> str:
        if name.startswith("arn:"):
            return name
        owner = "" if name.lower().startswith(AWS_OWNED_PREFIXES) else call.account
        return f"arn:aws:ssm:{call.region}:{owner}:document/{name}"

    if call.action == "GetParameter":
        return [Auth(action, parameter(call.params.get("Name", "")))]
    if call.action == "GetParameters":
        return [Auth(action, parameter(n)) for n in call.params.get("Names") or []]
    if call.action in ("GetDocument", "DescribeDocument"):
        return [Auth(action, document(call.params.get("Name", "")))]
    if call.action in ("TerminateSession", "ResumeSession"):
        return [Auth(action, f"{arn}:session/{call.params.get('SessionId', '')}")]
    if call.action == "SendCommand":
        found = [Auth(action, document(call.params.get("DocumentName", "")))]
        for instance_id in call.params.get("InstanceIds") or []:
            if _instance(call, instance_id) is None:
                continue  # SSM answers InvalidInstanceId itself
            tags = _ec2_tags(call, instance_id)
            context = dict(_tag_context(tags, "ssm:resourceTag"), **_tag_context(tags, "aws:ResourceTag"))
            found.append(Auth(action, f"arn:aws:ec2:{call.region}:{call.account}:instance/{instance_id}", context))
        if call.params.get("Targets"):
            found.append(Auth(action, f"arn:aws:ec2:{call.region}:{call.account}:instance/*"))
        return found
    return [Auth(action, "*")]


def _sts(call: Call) -> list[Auth]:
    if call.action == "GetCallerIdentity":
        return []  # "No permissions are required to perform this operation" (STS API reference)
    return [Auth(f"sts:{call.action}", "*")]
