# The bastions' security group: no inbound rule at all (Session Manager connects outward), and
# outbound HTTPS only (SSM, ECS Exec, package mirrors).
resource "aws_security_group" "bastion" {
  name        = "${var.name}-bastion"
  description = "fargate-connect bastions: no ingress, HTTPS out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-bastion" })
}

resource "aws_vpc_security_group_egress_rule" "bastion_https" {
  security_group_id = aws_security_group.bastion.id
  description       = "HTTPS to SSM, ECS and package mirrors"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

# ---- Optional endpoints, for bastions in subnets without a route out -------------------------
#
# What a bastion reaches: ssm, ec2messages and ssmmessages (its SSM agent and the Session Manager
# channels of ECS Exec), ecs (the connect script's ExecuteCommand, DescribeTasks and ListTasks),
# and S3 (the dnf repositories of Amazon Linux 2023, which are regional S3 buckets). Gateway
# endpoints serve only buckets of their own region, so the Session Manager plugin's download URL
# (s3.amazonaws.com/session-manager-downloads, a us-east-1 bucket) is not reachable through it
# elsewhere: without a route out, bake the plugin into the AMI or mirror it in the region.
#
# Private DNS makes each interface endpoint answer for the service's name in the WHOLE VPC, not
# only for bastions: every instance in the VPC (the example's bot among them) then reaches SSM,
# Parameter Store and ECS through these endpoints. Their security group therefore admits HTTPS
# from the VPC's CIDR blocks by default (var.endpoint_ingress_cidrs narrows or widens that), and
# from the bastions' group whatever the CIDRs.

data "aws_vpc" "this" {
  count = var.create_vpc_endpoints ? 1 : 0
  id    = var.vpc_id
}

locals {
  endpoint_services = var.create_vpc_endpoints ? toset(["ssm", "ssmmessages", "ec2messages", "ecs"]) : toset([])
  endpoint_ingress_cidrs = !var.create_vpc_endpoints ? [] : (
    length(var.endpoint_ingress_cidrs) > 0 ? var.endpoint_ingress_cidrs :
    [for a in data.aws_vpc.this[0].cidr_block_associations : a.cidr_block if a.state == "associated"]
  )
  # Service names are <reverse DNS prefix>.<region>.<service>: com.amazonaws in the aws
  # partition, cn.com.amazonaws in aws-cn (the provider's aws_partition.reverse_dns_prefix).
  service_prefix = "${data.aws_partition.current.reverse_dns_prefix}.${local.region}"
}

# Name and description as first released: changing either replaces the group, which AWS refuses
# while endpoints still use it.
resource "aws_security_group" "endpoints" {
  count       = var.create_vpc_endpoints ? 1 : 0
  name        = "${var.name}-ssm-endpoints"
  description = "fargate-connect: HTTPS from bastions to the SSM endpoints"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-vpc-endpoints" })
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_cidrs" {
  for_each          = toset(local.endpoint_ingress_cidrs)
  security_group_id = aws_security_group.endpoints[0].id
  description       = "HTTPS from ${each.value}: private DNS sends the whole VPC here"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_bastions" {
  count                        = var.create_vpc_endpoints ? 1 : 0
  security_group_id            = aws_security_group.endpoints[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.bastion.id
  tags                         = local.tags
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.endpoint_services
  vpc_id              = var.vpc_id
  service_name        = "${local.service_prefix}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
  tags                = merge(local.tags, { Name = "${var.name}-${each.key}" })

  lifecycle {
    precondition {
      condition     = length(var.endpoint_route_table_ids) > 0 || var.s3_reachable_without_endpoint
      error_message = "create_vpc_endpoints is set but endpoint_route_table_ids is empty: no S3 gateway endpoint is made, and bastions in subnets without a route out cannot install the Session Manager plugin (dnf needs the regional S3 repositories). Pass the bastion subnets' route tables, or set s3_reachable_without_endpoint = true if they reach S3 another way."
    }
  }
}

moved {
  from = aws_vpc_endpoint.ssm
  to   = aws_vpc_endpoint.interface
}

resource "aws_vpc_endpoint" "s3" {
  count             = var.create_vpc_endpoints && length(var.endpoint_route_table_ids) > 0 ? 1 : 0
  vpc_id            = var.vpc_id
  service_name      = "${local.service_prefix}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.endpoint_route_table_ids
  tags              = merge(local.tags, { Name = "${var.name}-s3" })
}

