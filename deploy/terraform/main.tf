# What fargate-connect needs in an account: the bot's role (least privilege), the permissions
# boundary every per-request bastion role must carry, the bastions' no-ingress security group,
# and optionally the VPC endpoints bastions need in subnets without a route out.
#
# Each statement names the resource types the Service Authorization Reference (SAR) lists for its
# actions; actions the SAR lists with no resource type are granted on "*", and narrowed by a
# condition key where the SAR has one.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  # The path the bot administers: the per-request roles and instance profiles, nothing else.
  # worker/src/aws/iam.rs creates them there, named fargate-connect-<request id>, and request ids
  # are fc-<8 characters>.
  bastion_path     = "/fargate-connect/"
  bastion_names    = "fargate-connect-fc-*"
  bastion_roles    = "arn:${local.partition}:iam::${local.account}:role${local.bastion_path}${local.bastion_names}"
  bastion_profiles = "arn:${local.partition}:iam::${local.account}:instance-profile${local.bastion_path}${local.bastion_names}"
  # The bot's own role and profile live on another path, which no statement below reaches: the
  # bot can neither pass its own role to an instance nor rewrite it.
  bot_path = "/fargate-connect-bot/"

  request_tag = "fargate-connect:request-id"
  ec2_arn     = "arn:${local.partition}:ec2:${local.region}:${local.account}"
  ssm_arn     = "arn:${local.partition}:ssm:${local.region}"

  # ECS ARNs carry the cluster's name: cluster/NAME, task/NAME/TASK_ID, service/NAME/SERVICE.
  ecs_arn       = "arn:${local.partition}:ecs:${local.region}:${local.account}"
  clusters      = length(var.ecs_cluster_arns) > 0 ? var.ecs_cluster_arns : ["${local.ecs_arn}:cluster/*"]
  cluster_parts = [for c in local.clusters : split(":cluster/", c)]
  tasks         = [for p in local.cluster_parts : "${p[0]}:task/${p[1]}/*"]
  services      = [for p in local.cluster_parts : "${p[0]}:service/${p[1]}/*"]

  tags = merge({ "fargate-connect:managed" = "true" }, var.tags)
}

# ---- The boundary every bastion role carries --------------------------------------------------

data "aws_iam_policy_document" "boundary" {
  # The credential perimeter (worker/src/aws/perimeter.rs says each rule), here in the boundary,
  # which the bot cannot rewrite, as well as in each role's inline policy, which it writes.
  dynamic "statement" {
    for_each = var.credential_perimeter ? {
      CredentialsOnlyInTheBastionsVpc       = ["aws:ec2InstanceSourceVPC", "$${aws:SourceVpc}"]
      CredentialsOnlyFromTheBastionsAddress = ["aws:ec2InstanceSourcePrivateIPv4", "$${aws:VpcSourceIp}"]
    } : {}
    content {
      sid       = statement.key
      effect    = "Deny"
      actions   = ["*"]
      resources = ["*"]
      condition {
        test     = "StringNotEquals"
        variable = statement.value[0]
        values   = [statement.value[1]]
      }
      condition {
        test     = "Null"
        variable = "ec2:SourceInstanceARN"
        values   = ["false"]
      }
      condition {
        test     = "BoolIfExists"
        variable = "aws:ViaAWSService"
        values   = ["false"]
      }
    }
  }
  dynamic "statement" {
    for_each = length(var.allowed_vpc_endpoint_ids) > 0 ? [1] : []
    content {
      sid       = "CredentialsOnlyThroughOurVpcEndpoints"
      effect    = "Deny"
      actions   = ["*"]
      resources = ["*"]
      condition {
        test     = "StringNotEquals"
        variable = "aws:SourceVpce"
        values   = var.allowed_vpc_endpoint_ids
      }
      condition {
        test     = "Null"
        variable = "aws:SourceVpce"
        values   = ["false"]
      }
      condition {
        test     = "Null"
        variable = "ec2:SourceInstanceARN"
        values   = ["false"]
      }
      condition {
        test     = "BoolIfExists"
        variable = "aws:ViaAWSService"
        values   = ["false"]
      }
    }
  }
  dynamic "statement" {
    for_each = length(var.bastion_egress_cidrs) > 0 ? [1] : []
    content {
      sid       = "CredentialsOnlyFromTheNatsAddresses"
      effect    = "Deny"
      actions   = ["*"]
      resources = ["*"]
      condition {
        test     = "NotIpAddress"
        variable = "aws:SourceIp"
        values   = var.bastion_egress_cidrs
      }
      condition {
        test     = "Null"
        variable = "aws:SourceVpc"
        values   = ["true"]
      }
      condition {
        test     = "Null"
        variable = "ec2:SourceInstanceARN"
        values   = ["false"]
      }
      condition {
        test     = "BoolIfExists"
        variable = "aws:ViaAWSService"
        values   = ["false"]
      }
    }
  }
  dynamic "statement" {
    for_each = coalesce(var.exec_only_through_vpc_endpoint, var.create_vpc_endpoints) ? [1] : []
    content {
      sid       = "ExecOnlyThroughTheVpcEndpoint"
      effect    = "Deny"
      actions   = ["ecs:ExecuteCommand"]
      resources = ["*"]
      condition {
        test     = "Null"
        variable = "aws:SourceVpc"
        values   = ["true"]
      }
    }
  }
  # ExecuteCommand is authorized against the cluster and the task (SAR: cluster*, task*).
  statement {
    sid       = "EcsExecIntoTasks"
    actions   = ["ecs:ExecuteCommand"]
    resources = concat(local.clusters, local.tasks)
  }
  # The connect script's `aws ecs describe-tasks` (SAR: task*).
  statement {
    sid       = "DescribeTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = local.tasks
  }
  # Its `aws ecs list-tasks` for the service's replacement task. The SAR's resource type for
  # ListTasks (container-instance) is never a Fargate task's: the ECS guide's example grants it
  # on "*" narrowed by the ecs:cluster key, and so does the worker's per-request policy.
  statement {
    sid       = "ListTasksInTheClusters"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnLike"
      variable = "ecs:cluster"
      values   = local.clusters
    }
  }
  # The SSM agent: registering, Session Manager channels, and Run Command (the extension's
  # rescheduled shutdown). The SAR lists no resource type for the ssmmessages and ec2messages
  # actions; the ssm ones accept instance or document ARNs, which "*" covers.
  statement {
    sid = "SsmAgent"
    actions = [
      "ssm:UpdateInstanceInformation",
      "ssm:ListInstanceAssociations",
      "ssm:DescribeInstanceProperties",
      "ssm:DescribeDocumentParameters",
      "ssm:GetDocument",
      "ssm:UpdateInstanceAssociationStatus",
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
      "ec2messages:AcknowledgeMessage",
      "ec2messages:DeleteMessage",
      "ec2messages:FailMessage",
      "ec2messages:GetEndpoint",
      "ec2messages:GetMessages",
      "ec2messages:SendReply",
    ]
    resources = ["*"]
  }
  # What the account's settings ask of a session (all optional, see variables): the ECS Exec and
  # Session Manager KMS keys, and the session log targets of the Session Manager preferences.
  dynamic "statement" {
    for_each = length(var.session_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "SessionKeys"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = var.session_kms_key_arns
    }
  }
  dynamic "statement" {
    for_each = var.session_log_bucket != "" ? [1] : []
    content {
      sid       = "SessionLogObjects"
      actions   = ["s3:PutObject"]
      resources = ["arn:${local.partition}:s3:::${var.session_log_bucket}/*"]
    }
  }
  dynamic "statement" {
    for_each = var.session_log_bucket != "" ? [1] : []
    content {
      sid       = "SessionLogBucket"
      actions   = ["s3:GetEncryptionConfiguration"]
      resources = ["arn:${local.partition}:s3:::${var.session_log_bucket}"]
    }
  }
  dynamic "statement" {
    for_each = var.session_log_group != "" ? [1] : []
    content {
      sid       = "SessionLogStreams"
      actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${var.session_log_group}:*"]
    }
  }
  dynamic "statement" {
    for_each = var.session_log_group != "" ? [1] : []
    content {
      sid       = "SessionLogGroups"
      actions   = ["logs:DescribeLogGroups"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_policy" "boundary" {
  name        = "${var.name}-bastion-boundary"
  path        = local.bastion_path
  description = "The most a fargate-connect bastion may ever do: ECS Exec into tasks and run the SSM agent."
  policy      = data.aws_iam_policy_document.boundary.json
  tags        = local.tags
}

# ---- The bot's role -------------------------------------------------------------------------

data "aws_iam_policy_document" "bot_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = var.bot_role_trusted_services
    }
  }
}

data "aws_iam_policy_document" "bot" {
  # IAM: per-request roles only named and placed as the worker makes them, and only with the
  # boundary (the SAR lists iam:PermissionsBoundary for CreateRole and PutRolePolicy). CreateRole
  # with tags is also authorized as iam:TagRole.
  statement {
    sid       = "CreateBastionRolesWithTheBoundary"
    actions   = ["iam:CreateRole", "iam:PutRolePolicy"]
    resources = [local.bastion_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.boundary.arn]
    }
  }
  # Teardown (and the reaper): undo exactly that. The worker attaches no managed policy (one
  # inline policy holds the SSM agent's actions); ListAttached/Detach remove what a role created
  # by an earlier version, or by hand, carries.
  statement {
    sid = "ManageBastionRoles"
    actions = [
      "iam:TagRole",
      "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies",
      "iam:DeleteRolePolicy",
      "iam:DetachRolePolicy",
      "iam:DeleteRole",
    ]
    resources = [local.bastion_roles]
  }
  statement {
    sid = "ManageBastionInstanceProfiles"
    actions = [
      "iam:CreateInstanceProfile",
      "iam:TagInstanceProfile",
      "iam:GetInstanceProfile",
      "iam:AddRoleToInstanceProfile",
      "iam:RemoveRoleFromInstanceProfile",
      "iam:DeleteInstanceProfile",
    ]
    resources = [local.bastion_profiles]
  }
  # RunInstances with the bastion's profile, and AddRoleToInstanceProfile, are authorized as
  # iam:PassRole on the role (IAM API reference, AddRoleToInstanceProfile). In aws-cn, AWS's own
  # policies (AWSEC2SpotServiceRolePolicy) also name EC2 as ec2.amazonaws.com.cn.
  statement {
    sid       = "PassBastionRolesToEc2Only"
    actions   = ["iam:PassRole"]
    resources = [local.bastion_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = local.partition == "aws-cn" ? ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"] : ["ec2.amazonaws.com"]
    }
  }
  # Spot launches need EC2's service-linked role, created on first use.
  statement {
    sid       = "SpotServiceLinkedRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account}:role/aws-service-role/spot.amazonaws.com/*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["spot.amazonaws.com"]
    }
  }
  # Preflight reads the target task's role (any role of the account) and its policies, which may
  # be AWS managed ones; doctor reads the boundary.
  statement {
    sid       = "ReadTaskRolesForPreflight"
    actions   = ["iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"]
    resources = ["arn:${local.partition}:iam::${local.account}:role/*"]
  }
  # The account's own policies and AWS managed ones (whose ARNs have "aws" for an account); IAM
  # serves no other account's policies, so "*" there grants nothing more.
  statement {
    sid       = "ReadPoliciesForPreflight"
    actions   = ["iam:GetPolicy", "iam:GetPolicyVersion"]
    resources = ["arn:${local.partition}:iam::*:policy/*"]
  }
  # The reaper lists by path prefix and filters by path itself. The SAR lists no resource type
  # for either action.
  statement {
    sid       = "ListRolesAndProfilesForTheReaper"
    actions   = ["iam:ListRoles", "iam:ListInstanceProfiles"]
    resources = ["*"]
  }

  # EC2: what RunInstances creates (instance, volume, and the spot request of a spot launch)
  # must carry a request id (aws:RequestTag is checked per created resource); tag only at
  # launch; terminate only what carries the tag.
  statement {
    sid     = "LaunchTaggedBastions"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:volume/*",
      "${local.ec2_arn}:spot-instances-request/*",
    ]
    condition {
      test     = "Null"
      variable = "aws:RequestTag/${local.request_tag}"
      values   = ["false"]
    }
  }
  statement {
    sid     = "LaunchIntoOurNetwork"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn}:subnet/*",
      "${local.ec2_arn}:network-interface/*",
      aws_security_group.bastion.arn,
      "arn:${local.partition}:ec2:${local.region}::image/*",
    ]
  }
  statement {
    sid     = "TagOnlyAtLaunch"
    actions = ["ec2:CreateTags"]
    resources = [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:volume/*",
      "${local.ec2_arn}:spot-instances-request/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }
  statement {
    sid       = "TerminateOnlyBastions"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn}:instance/*"]
    condition {
      test     = "Null"
      variable = "ec2:ResourceTag/${local.request_tag}"
      values   = ["false"]
    }
  }
  # EC2's Describe actions have no resource type in the SAR.
  statement {
    sid = "DescribeEc2"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcs",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSpotPriceHistory",
      "ec2:DescribeVpcEndpoints",
    ]
    resources = ["*"]
  }

  # ECS: read only, each action on its own resource type.
  statement {
    sid       = "DescribeClusters"
    actions   = ["ecs:DescribeClusters"]
    resources = local.clusters
  }
  statement {
    sid       = "DescribeServices"
    actions   = ["ecs:DescribeServices"]
    resources = local.services
  }
  statement {
    sid       = "DescribeTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = local.tasks
  }
  # ListTasks: see the boundary's ListTasksInTheClusters.
  statement {
    sid       = "ListTasksInTheClusters"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnLike"
      variable = "ecs:cluster"
      values   = local.clusters
    }
  }
  statement {
    sid       = "ReadTaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }

  # SSM: the AMI parameter, readiness, sessions, Run Command on bastions (the extension's
  # rescheduled shutdown) and its result, and Session Manager's preferences document.
  # Public parameters and AWS-owned documents have no account in their ARNs, hence the "*"
  # account; no one else can own such names (the SSM API reference reserves the prefix "aws" for
  # parameter names and for document names).
  statement {
    sid       = "ReadAmiParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["${local.ssm_arn}:*:parameter${var.ami_parameter_prefix}*"]
  }
  statement {
    sid       = "ReadinessSessionsAndCommandResults"
    actions   = ["ssm:DescribeInstanceInformation", "ssm:DescribeSessions", "ssm:GetCommandInvocation"]
    resources = ["*"]
  }
  statement {
    sid       = "EndSessions"
    actions   = ["ssm:TerminateSession"]
    resources = ["${local.ssm_arn}:${local.account}:session/*"]
  }
  statement {
    sid       = "RunShellScriptDocument"
    actions   = ["ssm:SendCommand"]
    resources = ["${local.ssm_arn}:*:document/AWS-RunShellScript"]
  }
  statement {
    sid       = "RunCommandsOnBastionsOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["${local.ec2_arn}:instance/*"]
    condition {
      test     = "Null"
      variable = "ssm:resourceTag/${local.request_tag}"
      values   = ["false"]
    }
  }
  # SSM-SessionManagerRunShell is AWS-owned until Session Manager preferences are saved in the
  # account, which makes it the account's own: either ARN (read only).
  statement {
    sid       = "ReadSessionManagerPreferences"
    actions   = ["ssm:GetDocument"]
    resources = ["${local.ssm_arn}:*:document/SSM-SessionManagerRunShell"]
  }
}

resource "aws_iam_role" "bot" {
  name                 = "${var.name}-bot"
  path                 = local.bot_path
  description          = "fargate-connect: launches time-boxed bastions and their per-request roles."
  assume_role_policy   = data.aws_iam_policy_document.bot_trust.json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_role_policy" "bot" {
  name   = "fargate-connect-bot"
  role   = aws_iam_role.bot.id
  policy = data.aws_iam_policy_document.bot.json
}

resource "aws_iam_instance_profile" "bot" {
  name = "${var.name}-bot"
  path = local.bot_path
  role = aws_iam_role.bot.name
  tags = local.tags
}

# The tag guard: only the bot may write or remove `fargate-connect:*` tags, on instances (the
# requester tag is what a person's Session Manager policy trusts) and on roles and instance
# profiles (the reaper and the teardown trust them). Not attached here: it is meant for an SCP
# of the account, or for every person's and team's policy (the `tag_guard_policy_json` output).
data "aws_iam_policy_document" "tag_guard" {
  statement {
    sid       = "OnlyTheBotWritesFargateConnectTags"
    effect    = "Deny"
    actions   = ["ec2:CreateTags", "ec2:DeleteTags", "iam:TagRole", "iam:UntagRole", "iam:TagInstanceProfile", "iam:UntagInstanceProfile"]
    resources = ["*"]
    condition {
      test     = "ForAnyValue:StringLike"
      variable = "aws:TagKeys"
      values   = ["fargate-connect:*"]
    }
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = [aws_iam_role.bot.arn]
    }
  }
}
