# An example root: the module, plus the bot itself on a small EC2 instance run by systemd, its
# SQLite ledger on an encrypted EBS volume of its own that outlives the instance. No SSH: no key
# pair, no inbound rule except the bot's port from the load balancer or proxy you put in front
# (var.ingress_cidrs); reach the instance with Session Manager. IMDSv2 only.
#
# `terraform apply` never replaces the instance by itself (a new AMI or new user data are
# ignored): roll out a new binary or config with `terraform apply -replace=aws_instance.bot`,
# which keeps the ledger volume and attaches it to the new instance.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

module "fargate_connect" {
  source                   = "../.."
  vpc_id                   = var.vpc_id
  ecs_cluster_arns         = var.ecs_cluster_arns
  create_vpc_endpoints     = var.create_vpc_endpoints
  endpoint_subnet_ids      = var.endpoint_subnet_ids
  endpoint_route_table_ids = var.endpoint_route_table_ids
  tags                     = var.tags
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_ssm_parameter" "ami" {
  name = var.ami_parameter
}

# The bot reads its two Slack secrets from Parameter Store at boot (SecureString parameters you
# create: see README).
data "aws_iam_policy_document" "secrets" {
  statement {
    actions = ["ssm:GetParameter"]
    resources = [
      "arn:${data.aws_partition.current.partition}:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter${var.slack_signing_secret_parameter}",
      "arn:${data.aws_partition.current.partition}:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter${var.slack_bot_token_parameter}",
    ]
  }
}

resource "aws_iam_role_policy" "secrets" {
  name   = "fargate-connect-slack-secrets"
  role   = module.fargate_connect.bot_role_name
  policy = data.aws_iam_policy_document.secrets.json
}

# What the SSM agent needs for Session Manager, and nothing more (the Systems Manager guide's
# "instance profile with minimal Session Manager permissions", the same as AWS's managed
# AWSCloud9SSMInstanceProfile). Not AmazonSSMManagedInstanceCore: it also grants
# ssm:GetParameter(s) on every parameter of the account. The SAR lists no resource type for the
# ssmmessages actions.
data "aws_iam_policy_document" "session_manager" {
  statement {
    sid = "SessionManagerAgent"
    actions = [
      "ssm:UpdateInstanceInformation",
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "session_manager" {
  count  = var.session_manager ? 1 : 0
  name   = "fargate-connect-session-manager-agent"
  role   = module.fargate_connect.bot_role_name
  policy = data.aws_iam_policy_document.session_manager.json
}

resource "aws_security_group" "bot" {
  name        = "fargate-connect-bot"
  description = "fargate-connect bot: its port from the proxy only; out to AWS and Slack"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "fargate-connect-bot" })
}

resource "aws_vpc_security_group_ingress_rule" "bot_from_proxy" {
  for_each          = toset(var.ingress_cidrs)
  security_group_id = aws_security_group.bot.id
  description       = "Slack's requests, through your TLS proxy or load balancer"
  ip_protocol       = "tcp"
  from_port         = var.bot_port
  to_port           = var.bot_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "bot_https" {
  security_group_id = aws_security_group.bot.id
  description       = "HTTPS to AWS APIs and Slack"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

locals {
  config = templatefile("${path.module}/fargate-connect.toml.tftpl", {
    port                      = var.bot_port
    region                    = var.region
    cluster                   = var.default_cluster
    subnets                   = jsonencode(var.bastion_subnet_ids)
    security_group_id         = module.fargate_connect.bastion_security_group_id
    permissions_boundary_arn  = module.fargate_connect.permissions_boundary_arn
    exec_through_vpc_endpoint = module.fargate_connect.exec_only_through_vpc_endpoint
    policy                    = var.policy_toml
  })
  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    release_url       = var.release_url
    release_sha256    = var.release_sha256
    config            = local.config
    unit              = file("${path.module}/../../../systemd/fargate-connect.service")
    region            = var.region
    signing_parameter = var.slack_signing_secret_parameter
    token_parameter   = var.slack_bot_token_parameter
    ledger_volume_id  = aws_ebs_volume.ledger.id
  })
}

# The ledger's volume: in the bot subnet's zone, encrypted, and snapshotted before Terraform
# ever deletes it (prevent_destroy cannot depend on a variable, and would also block a
# deliberate `terraform destroy`; var.ledger_final_snapshot = false opts out).
data "aws_subnet" "bot" {
  id = var.bot_subnet_id
}

resource "aws_ebs_volume" "ledger" {
  availability_zone = data.aws_subnet.bot.availability_zone
  type              = "gp3"
  size              = var.ledger_volume_size
  encrypted         = true
  kms_key_id        = var.ledger_kms_key_arn
  final_snapshot    = var.ledger_final_snapshot
  tags              = merge(var.tags, { Name = "fargate-connect-ledger" })
}

resource "aws_volume_attachment" "ledger" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.ledger.id
  instance_id = aws_instance.bot.id
  # Stop the instance before detaching (on replacement or destroy): SQLite's file is then
  # closed and the file system unmounted cleanly.
  stop_instance_before_detaching = true
}

resource "aws_instance" "bot" {
  ami                         = data.aws_ssm_parameter.ami.value
  instance_type               = var.instance_type
  subnet_id                   = var.bot_subnet_id
  vpc_security_group_ids      = [aws_security_group.bot.id]
  iam_instance_profile        = module.fargate_connect.bot_instance_profile_name
  user_data                   = local.user_data
  user_data_replace_on_change = false

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # Nothing to keep on the root volume: the ledger lives on aws_ebs_volume.ledger. Upgrading an
  # instance made before the ledger had its own volume: its ledger is still on this root volume
  # (user data runs only at first boot), which the next replacement deletes. Before replacing it,
  # stop the service, mount the new volume (/dev/sdf, or its nvme-Amazon_Elastic_Block_Store_vol…
  # name; mkfs.xfs it) and copy /var/lib/private/fargate-connect/ onto it.
  root_block_device {
    volume_type           = "gp3"
    volume_size           = 8
    encrypted             = true
    delete_on_termination = true
  }

  tags = merge(var.tags, { Name = "fargate-connect-bot" })

  # The boot script reads the Slack secrets with the role's permissions: create them first (the
  # script still retries, as IAM takes a while to propagate).
  depends_on = [aws_iam_role_policy.secrets, aws_iam_role_policy.session_manager]

  lifecycle {
    # A newer AMI in the public parameter, or new user data, must not replace the bot (and its
    # in-flight requests) on the next apply; replace it deliberately with -replace.
    ignore_changes = [ami, user_data]
  }
}
