variable "region" {
  description = "AWS region of the bot, its database, its bastions and the ECS clusters."
  type        = string
}

variable "vpc_id" {
  description = "VPC for the bot, its database and its bastions."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets in at least two zones, for the bot's tasks and the database (they need a route to AWS APIs and to slack.com, through NAT or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give private subnets in at least two availability zones: the point of this example is surviving a zone."
  }
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

variable "image" {
  description = "The bot's image, built from deploy/Dockerfile and pushed to a registry the tasks can pull from (ECR: repository URL and tag or digest)."
  type        = string
}

variable "replicas" {
  description = "Bot tasks running at once; two or more serve through the loss of a task or a zone."
  type        = number
  default     = 2

  validation {
    condition     = var.replicas >= 1
    error_message = "replicas must be at least 1."
  }
}

variable "cpu_architecture" {
  description = "The image's architecture: X86_64 or ARM64."
  type        = string
  default     = "X86_64"
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL ledger."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "db_kms_key_arn" {
  description = "KMS key for the database's storage (empty: the account's aws/rds key)."
  type        = string
  default     = null
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database (the audit history lives there). Turn off only to tear the example down on purpose."
  type        = bool
  default     = true
}

variable "db_final_snapshot" {
  description = "Take a final snapshot when the database is deleted."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "How long the bot's logs are kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "policy_toml" {
  description = "The [policy] section of the bot's config (who may connect to what; see README)."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for everything created."
  type        = map(string)
  default     = {}
}

variable "create_vpc_endpoints" {
  description = "Create the VPC endpoints bastions need (see the module)."
  type        = bool
  default     = false
}

variable "endpoint_subnet_ids" {
  description = "Subnets for the VPC endpoints, when created."
  type        = list(string)
  default     = []
}

variable "slack_mode" {
  description = "\"socket\" (the tasks connect out to Slack; no load balancer, nothing in) or \"http\" (Slack posts to an internet-facing ALB with your certificate)."
  type        = string
  default     = "socket"
  validation {
    condition     = contains(["socket", "http"], var.slack_mode)
    error_message = "slack_mode is \"socket\" or \"http\"."
  }
}

variable "public_subnet_ids" {
  description = "HTTP mode: the ALB's public subnets, in two or more zones."
  type        = list(string)
  default     = []
}

variable "certificate_arn" {
  description = "HTTP mode: the ACM certificate for the name Slack's request URLs use (a CNAME or alias to the ALB)."
  type        = string
  default     = null
}

variable "alb_ingress_cidrs" {
  description = "HTTP mode: who may reach the ALB on 443. Slack publishes no fixed address range, so the default is everyone; every request is still checked against Slack's signature."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "endpoint_route_table_ids" {
  description = "Route tables of the bastions' subnets, for the S3 gateway endpoint, when create_vpc_endpoints is set (see the module)."
  type        = list(string)
  default     = []
}
