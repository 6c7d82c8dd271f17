# What fargate-connect needs in an account: the bot's role (least privilege), the permissions
# boundary every per-request bastion role must carry, the bastions' no-ingress security group,
# and optionally the VPC endpoints SSM needs in private subnets.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name
  iam_path  = "/fargate-connect/"
  # Per-request roles and instance profiles live under this path, and only there.
  bastion_roles    = "arn:${local.partition}:iam::${local.account}:role/fargate-connect/*"
  bastion_profiles = "arn:${local.partition}:iam::${local.account}:instance-profile/fargate-connect/*"
  request_tag      = "fargate-connect:request-id"
  clusters         = length(var.ecs_cluster_arns) > 0 ? var.ecs_cluster_arns : ["arn:${local.partition}:ecs:${local.region}:${local.account}:cluster/*"]
  tasks            = [for c in local.clusters : replace(c, ":cluster/", ":task/")]
  tags             = merge({ "fargate-connect:managed" = "true" }, var.tags)
}

# ---- The boundary every bastion role carries --------------------------------------------------

data "aws_iam_policy_document" "boundary" {
  statement {
    sid = "EcsExecIntoTasks"
    actions = [
      "ecs:ExecuteCommand",
      "ecs:DescribeTasks",
      "ecs:ListTasks",
    ]
    resources = concat(local.clusters, local.tasks, ["arn:${local.partition}:ecs:${local.region}:${local.account}:container-instance/*"])
  }
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
}

resource "aws_iam_policy" "boundary" {
  name        = "${var.name}-bastion-boundary"
  path        = local.iam_path
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
  # IAM: per-request roles only under /fargate-connect/ and only with the boundary attached.
  statement {
    sid       = "CreateBastionRolesWithTheBoundary"
    actions   = ["iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy"]
    resources = [local.bastion_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.boundary.arn]
    }
  }
  statement {
    sid = "ManageBastionRoles"
    actions = [
      "iam:TagRole",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
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
  statement {
    sid       = "PassBastionRolesToEc2Only"
    actions   = ["iam:PassRole"]
    resources = [local.bastion_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
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
  # Preflight reads task roles (to check they allow the ssmmessages actions); the reaper lists
  # roles and profiles (it filters them by path itself).
  statement {
    sid = "ReadRolesForPreflightAndTheReaper"
    actions = [
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListRolePolicies",
      "iam:ListAttachedRolePolicies",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:ListRoles",
      "iam:ListInstanceProfiles",
    ]
    resources = ["*"]
  }

  # EC2: launch only instances and volumes tagged with a request id; tag only at launch;
  # terminate only what carries the tag.
  statement {
    sid       = "LaunchTaggedBastions"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:instance/*", "arn:${local.partition}:ec2:${local.region}:${local.account}:volume/*", "arn:${local.partition}:ec2:${local.region}:${local.account}:spot-instances-request/*"]
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
      "arn:${local.partition}:ec2:${local.region}:${local.account}:subnet/*",
      "arn:${local.partition}:ec2:${local.region}:${local.account}:network-interface/*",
      aws_security_group.bastion.arn,
      "arn:${local.partition}:ec2:${local.region}::image/*",
    ]
  }
  statement {
    sid       = "TagOnlyAtLaunch"
    actions   = ["ec2:CreateTags"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }
  statement {
    sid       = "TerminateOnlyBastions"
    actions   = ["ec2:TerminateInstances"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:instance/*"]
    condition {
      test     = "Null"
      variable = "ec2:ResourceTag/${local.request_tag}"
      values   = ["false"]
    }
  }
  statement {
    sid = "DescribeEc2"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcs",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSpotPriceHistory",
    ]
    resources = ["*"]
  }

  # ECS: read only.
  statement {
    sid       = "ReadEcs"
    actions   = ["ecs:DescribeServices", "ecs:DescribeTasks", "ecs:ListTasks", "ecs:DescribeClusters"]
    resources = concat(local.clusters, local.tasks, [for c in local.clusters : replace(c, ":cluster/", ":service/")])
  }
  statement {
    sid       = "ReadTaskDefinitions"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }

  # SSM: the AMI parameter, readiness, sessions, and moving a bastion's own shutdown.
  statement {
    sid       = "ReadAmiParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["arn:${local.partition}:ssm:${local.region}::parameter${var.ami_parameter_prefix}*"]
  }
  statement {
    sid       = "ReadinessAndSessions"
    actions   = ["ssm:DescribeInstanceInformation", "ssm:DescribeSessions"]
    resources = ["*"]
  }
  statement {
    sid       = "EndSessions"
    actions   = ["ssm:TerminateSession"]
    resources = ["arn:${local.partition}:ssm:${local.region}:${local.account}:session/*"]
  }
  statement {
    sid       = "RescheduleShutdownDocument"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ssm:${local.region}::document/AWS-RunShellScript"]
  }
  statement {
    sid       = "RescheduleShutdownOnBastionsOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:instance/*"]
    condition {
      test     = "Null"
      variable = "ssm:resourceTag/${local.request_tag}"
      values   = ["false"]
    }
  }
}

resource "aws_iam_role" "bot" {
  name                 = "${var.name}-bot"
  path                 = local.iam_path
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
  path = local.iam_path
  role = aws_iam_role.bot.name
  tags = local.tags
}
