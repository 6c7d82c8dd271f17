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

# Optional interface endpoints, for bastions in subnets without a route out.
resource "aws_security_group" "endpoints" {
  count       = var.create_vpc_endpoints ? 1 : 0
  name        = "${var.name}-ssm-endpoints"
  description = "fargate-connect: HTTPS from bastions to the SSM endpoints"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-ssm-endpoints" })
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

resource "aws_vpc_endpoint" "ssm" {
  for_each            = var.create_vpc_endpoints ? toset(["ssm", "ssmmessages", "ec2messages"]) : toset([])
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
  tags                = merge(local.tags, { Name = "${var.name}-${each.key}" })
}
