output "service_name" {
  description = "The bot's ECS service."
  value       = aws_ecs_service.bot.name
}

output "ledger_endpoint" {
  description = "The PostgreSQL ledger (host:port)."
  value       = aws_db_instance.ledger.endpoint
}

output "slack_secrets_to_fill" {
  description = "Put the Slack tokens here before the tasks can start: aws secretsmanager put-secret-value --secret-id <arn> --secret-string <token>."
  value = {
    SLACK_BOT_TOKEN = aws_secretsmanager_secret.slack_bot_token.arn
    SLACK_APP_TOKEN = aws_secretsmanager_secret.slack_app_token.arn
  }
}

output "bastion_security_group_id" {
  value = module.fargate_connect.bastion_security_group_id
}
