# HTTP mode (`slack_mode = "http"`): Slack posts commands, clicks and events to an
# internet-facing Application Load Balancer with your certificate, which forwards them to the
# tasks on one port. TLS ends at the ALB (TLS 1.2 or 1.3 only); the tasks' group lets in only
# the ALB's group, on that port; the ALB drops malformed headers; the bot checks Slack's
# signature on every request and refuses a replay. In Socket Mode nothing here exists but the
# signing secret's (empty) secret, kept so that switching modes deletes nothing.

locals {
  http      = var.slack_mode == "http"
  http_port = 8080
  # The secret that differs between the modes: the signing secret, or the app-level token.
  slack_mode_secret = local.http ? aws_secretsmanager_secret.slack_signing_secret : aws_secretsmanager_secret.slack_app_token
}

resource "aws_secretsmanager_secret" "slack_signing_secret" {
  name        = "fargate-connect/slack-signing-secret"
  description = "The Slack app's signing secret (HTTP mode)"
  tags        = var.tags
}

resource "aws_security_group" "alb" {
  count       = local.http ? 1 : 0
  name        = "fargate-connect-slack-alb"
  description = "fargate-connect ALB: HTTPS from Slack; to the bot tasks on their one port"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "fargate-connect-slack-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = local.http ? toset(var.alb_ingress_cidrs) : toset([])
  security_group_id = aws_security_group.alb[0].id
  description       = "HTTPS from Slack"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_bot" {
  count                        = local.http ? 1 : 0
  security_group_id            = aws_security_group.alb[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = aws_security_group.bot.id
}

resource "aws_vpc_security_group_ingress_rule" "bot_from_alb" {
  count                        = local.http ? 1 : 0
  security_group_id            = aws_security_group.bot.id
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = aws_security_group.alb[0].id
}

resource "aws_lb" "slack" {
  count                      = local.http ? 1 : 0
  name                       = "fargate-connect-slack"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb[0].id]
  drop_invalid_header_fields = true
  # Slack waits 3 s for an answer; nothing the bot answers takes longer.
  idle_timeout = 30
  tags         = var.tags

  lifecycle {
    precondition {
      condition     = length(var.public_subnet_ids) >= 2 && var.certificate_arn != null
      error_message = "slack_mode = \"http\" needs public_subnet_ids (two zones or more) and certificate_arn."
    }
  }
}

resource "aws_lb_target_group" "bot" {
  count       = local.http ? 1 : 0
  name        = "fargate-connect-bot"
  target_type = "ip"
  protocol    = "HTTP"
  port        = local.http_port
  vpc_id      = var.vpc_id
  # A task being replaced finishes what it was answering (the bot drains within 20 s).
  deregistration_delay = 30
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count             = local.http ? 1 : 0
  load_balancer_arn = aws_lb.slack[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.bot[0].arn
  }
  tags = var.tags
}
