output "bot_instance_id" {
  description = "The bot's instance; open a shell with `aws ssm start-session --target <id>`."
  value       = aws_instance.bot.id
}

output "bot_private_ip" {
  description = "Point your TLS proxy or load balancer at this address and var.bot_port."
  value       = aws_instance.bot.private_ip
}

output "permissions_boundary_arn" {
  value = module.fargate_connect.permissions_boundary_arn
}

output "bastion_security_group_id" {
  value = module.fargate_connect.bastion_security_group_id
}
