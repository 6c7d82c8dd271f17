# An example root: the module, plus the bot itself as two or more ECS Fargate tasks in private
# subnets across zones, on a PostgreSQL ledger (RDS, Multi-AZ, encrypted). By default Slack runs
# in Socket Mode: the tasks open their connections to Slack, so nothing listens for the
# internet, no security group rule lets anything in, and there is no load balancer. With
# `slack_mode = "http"`, an internet-facing ALB with your certificate forwards Slack's requests
# to the tasks (http.tf). Any replica serves any request; jobs, expiries and Slack messages are
# shared through the database (README: "Deploying it").
#
# Secrets never enter Terraform's state: the database password is RDS's own managed secret
# (Secrets Manager), and the Slack secrets are secrets this root creates empty, for you to
# fill (`aws secretsmanager put-secret-value`, see the outputs); the task definition hands all
# three to the container through `secrets`. RDS rotates its secret (every 7 days); each
# rotation rolls the service onto the new password (at the end of this file).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.77: the ECS service's availability_zone_rebalancing.
      version = ">= 5.77, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

module "fargate_connect" {
  source                    = "../.."
  vpc_id                    = var.vpc_id
  ecs_cluster_arns          = var.ecs_cluster_arns
  create_vpc_endpoints      = var.create_vpc_endpoints
  endpoint_subnet_ids       = var.endpoint_subnet_ids
  endpoint_route_table_ids  = var.endpoint_route_table_ids
  bot_role_trusted_services = ["ecs-tasks.amazonaws.com"]
  tags                      = var.tags
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  db_name = "fargate_connect"
  db_user = "fargate_connect"
}

# --- The network: out only (HTTP mode adds one rule in, from the ALB: http.tf) ------------

resource "aws_security_group" "bot" {
  name        = "fargate-connect-bot-tasks"
  description = "fargate-connect bot tasks: nothing in; out to AWS APIs, Slack and the ledger"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "fargate-connect-bot-tasks" })
}

resource "aws_vpc_security_group_egress_rule" "bot_https" {
  security_group_id = aws_security_group.bot.id
  description       = "HTTPS and WSS to AWS APIs and Slack"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# (The two rules between groups carry no description: the emulator drops those, and its
# re-plan would never be clean. The groups' descriptions say what they are for.)
resource "aws_vpc_security_group_egress_rule" "bot_to_db" {
  security_group_id            = aws_security_group.bot.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_security_group" "db" {
  name        = "fargate-connect-ledger"
  description = "fargate-connect ledger: PostgreSQL from the bot tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "fargate-connect-ledger" })
}

resource "aws_vpc_security_group_ingress_rule" "db_from_bot" {
  security_group_id            = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.bot.id
}

# --- The ledger: RDS PostgreSQL, Multi-AZ, encrypted ---------------------------------------

resource "aws_db_subnet_group" "ledger" {
  name       = "fargate-connect-ledger"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_db_instance" "ledger" {
  identifier                  = "fargate-connect-ledger"
  engine                      = "postgres"
  engine_version              = var.db_engine_version
  instance_class              = var.db_instance_class
  allocated_storage           = 20
  max_allocated_storage       = 100
  storage_type                = "gp3"
  storage_encrypted           = true
  kms_key_id                  = var.db_kms_key_arn
  multi_az                    = true
  db_name                     = local.db_name
  username                    = local.db_user
  manage_master_user_password = true
  db_subnet_group_name        = aws_db_subnet_group.ledger.name
  vpc_security_group_ids      = [aws_security_group.db.id]
  publicly_accessible         = false
  backup_retention_period     = 14
  copy_tags_to_snapshot       = true
  deletion_protection         = var.db_deletion_protection
  skip_final_snapshot         = !var.db_final_snapshot
  final_snapshot_identifier   = var.db_final_snapshot ? "fargate-connect-ledger-final" : null
  auto_minor_version_upgrade  = true
  tags                        = var.tags
}

# --- Secrets: the Slack tokens (filled by you), the database's (RDS's own) -----------------

resource "aws_secretsmanager_secret" "slack_bot_token" {
  name        = "fargate-connect/slack-bot-token"
  description = "The Slack app's bot token (xoxb-...)"
  tags        = var.tags
}

# Both modes' secrets exist whatever the mode (the task reads one of them): switching modes
# then never deletes a filled secret, whose name Secrets Manager would hold for 30 days.
resource "aws_secretsmanager_secret" "slack_app_token" {
  name        = "fargate-connect/slack-app-token"
  description = "The Slack app's app-level token for Socket Mode (xapp-..., scope connections:write)"
  tags        = var.tags
}

# --- Logs ------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "bot" {
  name              = "/fargate-connect/bot"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# --- The task's execution role: pull the image, write the logs, read the three secrets ------

# Trust policies of the roles AWS services take on for this account only: ECS tasks (the
# execution role), SSM Automation and EventBridge (the rotation redeploy, at the end).
data "aws_iam_policy_document" "service_trust" {
  for_each = toset(["ecs-tasks", "ssm", "events"])
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "fargate-connect-bot-execution"
  assume_role_policy = data.aws_iam_policy_document.service_trust["ecs-tasks"].json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "ReadTheBotsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.slack_bot_token.arn, local.slack_mode_secret.arn, aws_db_instance.ledger.master_user_secret[0].secret_arn]
  }
  statement {
    sid       = "WriteTheBotsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.bot.arn}:log-stream:*"]
  }
  # Pulling from ECR; the SAR lists no resource type for GetAuthorizationToken.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullTheImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = ["arn:${data.aws_partition.current.partition}:ecr:${var.region}:${data.aws_caller_identity.current.account_id}:repository/*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "fargate-connect-bot-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- The bot: a task definition and a service of `replicas` tasks ---------------------------

locals {
  # sslmode=verify-full against the RDS CA bundle the image carries (deploy/Dockerfile); the
  # password comes from PGPASSWORD.
  database_url = "postgres://${local.db_user}@${aws_db_instance.ledger.address}:${aws_db_instance.ledger.port}/${local.db_name}?sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem"
  config = templatefile("${path.module}/fargate-connect.toml.tftpl", {
    database_url              = local.database_url
    slack_mode                = var.slack_mode
    http_port                 = local.http_port
    region                    = var.region
    cluster                   = var.default_cluster
    subnets                   = jsonencode(var.bastion_subnet_ids)
    security_group_id         = module.fargate_connect.bastion_security_group_id
    permissions_boundary_arn  = module.fargate_connect.permissions_boundary_arn
    exec_through_vpc_endpoint = module.fargate_connect.exec_only_through_vpc_endpoint
    policy                    = var.policy_toml
  })
}

resource "aws_ecs_cluster" "bot" {
  name = "fargate-connect-bot"
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = var.tags
}

resource "aws_ecs_task_definition" "bot" {
  family                   = "fargate-connect-bot"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "256"
  memory                   = "512"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = module.fargate_connect.bot_role_arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
  container_definitions = jsonencode([{
    name                   = "bot"
    image                  = var.image
    essential              = true
    command                = ["serve"]
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    environment = [
      { name = "FARGATE_CONNECT_CONFIG_TOML", value = local.config },
      { name = "FARGATE_CONNECT_LOG_FORMAT", value = "json" },
    ]
    # In HTTP mode the one port the load balancer forwards to; in Socket Mode none.
    portMappings = local.http ? [{ containerPort = local.http_port, protocol = "tcp" }] : []
    secrets = [
      { name = "PGPASSWORD", valueFrom = "${aws_db_instance.ledger.master_user_secret[0].secret_arn}:password::" },
      { name = "SLACK_BOT_TOKEN", valueFrom = aws_secretsmanager_secret.slack_bot_token.arn },
      # SLACK_APP_TOKEN in Socket Mode, SLACK_SIGNING_SECRET in HTTP mode.
      { name = local.http ? "SLACK_SIGNING_SECRET" : "SLACK_APP_TOKEN", valueFrom = local.slack_mode_secret.arn },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.bot.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "bot"
      }
    }
    # SIGTERM, then this long for in-flight work to hand over (the bot's own grace is 20 s).
    stopTimeout = 30
  }])
  tags = var.tags
}

resource "aws_ecs_service" "bot" {
  name            = "fargate-connect-bot"
  cluster         = aws_ecs_cluster.bot.id
  task_definition = aws_ecs_task_definition.bot.arn
  desired_count   = var.replicas
  launch_type     = "FARGATE"
  # A deployment starts the new tasks before it stops the old ones: never fewer than
  # `replicas` serving.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  # Spread the tasks over the zones again after one comes back.
  availability_zone_rebalancing = "ENABLED"
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.bot.id]
    assign_public_ip = false
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  # HTTP mode: registered with the load balancer's target group (http.tf).
  dynamic "load_balancer" {
    for_each = local.http ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.bot[0].arn
      container_name   = "bot"
      container_port   = local.http_port
    }
  }
  health_check_grace_period_seconds = local.http ? 30 : null
  depends_on                        = [aws_lb_listener.https]
  tags                              = var.tags
}

# --- A rolling deployment when RDS rotates the database password ---------------------------
# A task reads PGPASSWORD once, when it starts. After RDS rotates its managed secret, the open
# connections stay logged in but a new one would be refused. So each successful rotation of
# that secret starts a new deployment of the service: EventBridge matches Secrets Manager's
# RotationSucceeded event (delivered through CloudTrail; no trail needed) and runs an SSM
# Automation document that calls ecs:UpdateService with forceNewDeployment. The deployment
# starts tasks with the new password first and stops the old ones after
# (deployment_minimum_healthy_percent = 100), so no request goes unserved.

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  db_secret = aws_db_instance.ledger.master_user_secret[0].secret_arn
}

resource "aws_ssm_document" "redeploy" {
  name            = "fargate-connect-bot-redeploy"
  document_type   = "Automation"
  document_format = "YAML"
  content = yamlencode({
    schemaVersion = "0.3"
    description   = "Rolls the fargate-connect bot onto the database password RDS has just rotated."
    assumeRole    = aws_iam_role.redeploy_automation.arn
    mainSteps = [{
      name   = "forceNewDeployment"
      action = "aws:executeAwsApi"
      inputs = {
        Service            = "ecs"
        Api                = "UpdateService"
        cluster            = aws_ecs_cluster.bot.name
        service            = aws_ecs_service.bot.name
        forceNewDeployment = true
      }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role" "redeploy_automation" {
  name               = "fargate-connect-bot-redeploy"
  assume_role_policy = data.aws_iam_policy_document.service_trust["ssm"].json
  tags               = var.tags
}

data "aws_iam_policy_document" "redeploy_automation" {
  statement {
    sid       = "RedeployTheBotOnly"
    actions   = ["ecs:UpdateService"]
    resources = [aws_ecs_service.bot.id]
  }
}

resource "aws_iam_role_policy" "redeploy_automation" {
  name   = "fargate-connect-bot-redeploy"
  role   = aws_iam_role.redeploy_automation.id
  policy = data.aws_iam_policy_document.redeploy_automation.json
}

resource "aws_iam_role" "redeploy_events" {
  name               = "fargate-connect-bot-redeploy-events"
  assume_role_policy = data.aws_iam_policy_document.service_trust["events"].json
  tags               = var.tags
}

data "aws_iam_policy_document" "redeploy_events" {
  statement {
    sid       = "StartTheRedeploy"
    actions   = ["ssm:StartAutomationExecution"]
    resources = ["arn:${local.partition}:ssm:${var.region}:${local.account}:automation-definition/${aws_ssm_document.redeploy.name}:*"]
  }
  statement {
    sid       = "HandItsRoleToSsm"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.redeploy_automation.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ssm.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "redeploy_events" {
  name   = "fargate-connect-bot-redeploy-events"
  role   = aws_iam_role.redeploy_events.id
  policy = data.aws_iam_policy_document.redeploy_events.json
}

resource "aws_cloudwatch_event_rule" "db_password_rotated" {
  name        = "fargate-connect-db-password-rotated"
  description = "RDS rotated the bot's database password: roll the bot onto it."
  event_pattern = jsonencode({
    source        = ["aws.secretsmanager"]
    "detail-type" = ["AWS Service Event via CloudTrail"]
    detail = {
      eventSource         = ["secretsmanager.amazonaws.com"]
      eventName           = ["RotationSucceeded"]
      additionalEventData = { SecretId = [local.db_secret] }
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "redeploy" {
  rule     = aws_cloudwatch_event_rule.db_password_rotated.name
  arn      = "arn:${local.partition}:ssm:${var.region}:${local.account}:automation-definition/${aws_ssm_document.redeploy.name}:$DEFAULT"
  role_arn = aws_iam_role.redeploy_events.arn
  # The document takes no parameters: without this EventBridge would pass the whole event.
  input = jsonencode({})
}
