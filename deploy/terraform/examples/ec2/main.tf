# An example root: the module, plus the bot itself on a small EC2 instance run by systemd, its
# SQLite file on the instance's encrypted root volume. No SSH: no key pair, no inbound rule
# except the bot's port from the load balancer or proxy you put in front (var.ingress_cidrs);
# reach the instance with Session Manager. IMDSv2 only.

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
  source               = "../.."
  vpc_id               = var.vpc_id
  ecs_cluster_arns     = var.ecs_cluster_arns
  create_vpc_endpoints = var.create_vpc_endpoints
  endpoint_subnet_ids  = var.endpoint_subnet_ids
  tags                 = var.tags
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
    port                     = var.bot_port
    region                   = var.region
    cluster                  = var.default_cluster
    subnets                  = jsonencode(var.bastion_subnet_ids)
    security_group_id        = module.fargate_connect.bastion_security_group_id
    permissions_boundary_arn = module.fargate_connect.permissions_boundary_arn
    policy                   = var.policy_toml
  })
  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    release_url       = var.release_url
    config            = local.config
    unit              = file("${path.module}/../../../systemd/fargate-connect.service")
    region            = var.region
    signing_parameter = var.slack_signing_secret_parameter
    token_parameter   = var.slack_bot_token_parameter
  })
}

resource "aws_instance" "bot" {
  ami                         = data.aws_ssm_parameter.ami.value
  instance_type               = var.instance_type
  subnet_id                   = var.bot_subnet_id
  vpc_security_group_ids      = [aws_security_group.bot.id]
  iam_instance_profile        = module.fargate_connect.bot_instance_profile_name
  user_data                   = local.user_data
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = 8
    encrypted             = true
    delete_on_termination = false
  }

  tags = merge(var.tags, { Name = "fargate-connect-bot" })
}
