output "bot_role_arn" {
  description = "The bot's role; the example attaches it to the bot's instance."
  value       = aws_iam_role.bot.arn
}

output "bot_instance_profile_name" {
  description = "Instance profile holding the bot's role."
  value       = aws_iam_instance_profile.bot.name
}

output "permissions_boundary_arn" {
  description = "Set as aws.permissions_boundary_arn in the bot's config: every bastion role must carry it."
  value       = aws_iam_policy.boundary.arn
}

output "bastion_security_group_id" {
  description = "Set as aws.security_group_id in the bot's config."
  value       = aws_security_group.bastion.id
}

output "vpc_endpoint_ids" {
  description = "The endpoints, when created: ssm, ssmmessages, ec2messages, ecs (interface) and s3 (gateway)."
  value       = merge({ for k, e in aws_vpc_endpoint.interface : k => e.id }, { for e in aws_vpc_endpoint.s3 : "s3" => e.id })
}

output "bot_role_name" {
  description = "The bot's role name, for attaching more policies (the example adds reading its Slack secrets)."
  value       = aws_iam_role.bot.name
}

output "tag_guard_policy_json" {
  description = "A Deny of writing or removing fargate-connect:* tags by anyone but the bot: attach it as an SCP (or to every person's and team's policy), so nobody can tag an instance as someone's bastion or retag one."
  value       = data.aws_iam_policy_document.tag_guard.json
}

output "exec_only_through_vpc_endpoint" {
  description = "Whether the boundary refuses ecs:ExecuteCommand through no VPC endpoint: set aws.exec_through_vpc_endpoint in the bot's config to this (the examples do), or every connect is refused where no ecs endpoint serves the bastions."
  value       = coalesce(var.exec_only_through_vpc_endpoint, var.create_vpc_endpoints)
}
