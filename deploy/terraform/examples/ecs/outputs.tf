output "service_name" {
  description = "The bot's ECS service."
  value       = aws_ecs_service.bot.name
}

output "ledger_endpoint" {
  description = "The PostgreSQL ledger (host:port)."
  value       = aws_db_instance.ledger.endpoint
}

output "slack_secrets_to_fill" {
  description = "Put the Slack secrets here before the tasks can start: aws secretsmanager put-secret-value --secret-id <arn> --secret-string <token>."
  value = merge(
    { SLACK_BOT_TOKEN = aws_secretsmanager_secret.slack_bot_token.arn },
    local.http ? { SLACK_SIGNING_SECRET = local.slack_mode_secret.arn } : { SLACK_APP_TOKEN = local.slack_mode_secret.arn },
  )
}

output "bastion_security_group_id" {
  value = module.fargate_connect.bastion_security_group_id
}

output "load_balancer_dns_name" {
  description = "HTTP mode: point your certificate's name at this (CNAME or alias); Slack's request URLs are https://<that name>/slack/commands, /slack/interactions and /slack/events."
  value       = local.http ? aws_lb.slack[0].dns_name : null
}
