variable "region" {
  description = "AWS region of the bot, its bastions and the ECS clusters."
  type        = string
}

variable "vpc_id" {
  description = "VPC for the bot and its bastions."
  type        = string
}

variable "bot_subnet_id" {
  description = "Private subnet for the bot's instance (it needs a route to AWS APIs and to slack.com)."
  type        = string
}

variable "bastion_subnet_ids" {
  description = "Subnets for bastions, tried in order (aws.subnets in the bot's config)."
  type        = list(string)
}

variable "ecs_cluster_arns" {
  description = "ECS clusters people may connect to (empty = all in the region)."
  type        = list(string)
  default     = []
}

variable "default_cluster" {
  description = "The cluster a request uses when it names none (aws.cluster)."
  type        = string
}

variable "release_url" {
  description = "HTTPS URL of the fargate-connect binary (linux, the instance type's architecture) the instance downloads at boot."
  type        = string
}

variable "release_sha256" {
  description = "SHA-256 (hex) of that binary: the instance refuses to install anything else (`sha256sum fargate-connect`)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256 must be 64 lowercase hex digits (sha256sum's output)."
  }
}

variable "slack_signing_secret_parameter" {
  description = "Name of the SecureString parameter holding Slack's signing secret."
  type        = string
  default     = "/fargate-connect/slack-signing-secret"
}

variable "slack_bot_token_parameter" {
  description = "Name of the SecureString parameter holding the bot token (xoxb-…)."
  type        = string
  default     = "/fargate-connect/slack-bot-token"
}

variable "policy_toml" {
  description = "The [policy] section of the bot's config (who may connect to what; see README)."
  type        = string
  default     = <<-EOT
    [policy]
    [[policy.services]]
    name = "*"
    allow = []
  EOT
}

variable "instance_type" {
  description = "The bot's instance; it needs little (about 30 MiB of memory)."
  type        = string
  default     = "t3.micro"
}

variable "ami_parameter" {
  description = "Public SSM parameter naming the bot's AMI (Amazon Linux 2023, x86_64 for t3)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

variable "bot_port" {
  description = "Port the bot listens on, behind your TLS proxy or load balancer."
  type        = number
  default     = 3000
}

variable "ingress_cidrs" {
  description = "Where your TLS proxy or load balancer reaches the bot from."
  type        = list(string)
  default     = []
}

variable "create_vpc_endpoints" {
  description = "Create SSM interface endpoints (for subnets without a route out)."
  type        = bool
  default     = false
}

variable "endpoint_subnet_ids" {
  description = "Subnets for the SSM and ECS interface endpoints, when created."
  type        = list(string)
  default     = []
}

variable "endpoint_route_table_ids" {
  description = "Route tables of the bastions' subnets, for the S3 gateway endpoint (when endpoints are created)."
  type        = list(string)
  default     = []
}

variable "session_manager" {
  description = "Let operators reach the bot's instance with Session Manager (adds the SSM agent's minimal permissions to the bot's role)."
  type        = bool
  default     = true
}

variable "ledger_volume_size" {
  description = "Size in GiB of the ledger's EBS volume (gp3)."
  type        = number
  default     = 4
}

variable "ledger_kms_key_arn" {
  description = "KMS key for the ledger's volume; null = the account's default EBS key."
  type        = string
  default     = null
}

variable "ledger_final_snapshot" {
  description = "Snapshot the ledger's volume before Terraform deletes it (destroy, or a change that replaces it)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for everything created here."
  type        = map(string)
  default     = {}
}
