variable "name" {
  description = "Prefix for every resource this module creates (the bot role, the boundary, the security group)."
  type        = string
  default     = "fargate-connect"
}

variable "vpc_id" {
  description = "VPC the bastions are launched in (their security group is created here)."
  type        = string
}

variable "ecs_cluster_arns" {
  description = "ECS clusters the bot may read and the bastions may exec into, as cluster ARNs (arn:PARTITION:ecs:REGION:ACCOUNT:cluster/NAME); their tasks and services are derived from them. Empty = every cluster of the account and region."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.ecs_cluster_arns : can(regex("^arn:[a-z-]+:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_*-]+$", c))])
    error_message = "Each entry must be a cluster ARN, arn:PARTITION:ecs:REGION:ACCOUNT:cluster/NAME (not a name, and not a task or service ARN)."
  }
}

variable "ami_parameter_prefix" {
  description = "Public SSM parameters the bot may read to find the bastion AMI (matches aws.ami_parameter in the bot's config)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/"
}

variable "create_vpc_endpoints" {
  description = "Create interface endpoints for ssm, ssmmessages, ec2messages and ecs (private DNS on: they then serve the whole VPC), and an S3 gateway endpoint on endpoint_route_table_ids, for bastions in subnets without a route to the internet."
  type        = bool
  default     = false
}

variable "endpoint_subnet_ids" {
  description = "Subnets for the interface endpoints (one per availability zone), when create_vpc_endpoints is true."
  type        = list(string)
  default     = []
}

variable "endpoint_ingress_cidrs" {
  description = "IPv4 CIDR blocks the interface endpoints admit HTTPS from. Empty = every CIDR block of the VPC: with private DNS on, every instance of the VPC resolves SSM and ECS to these endpoints, so narrowing this cuts the others off. The bastions' group is always admitted."
  type        = list(string)
  default     = []
}

variable "endpoint_route_table_ids" {
  description = "Route tables of the bastions' subnets, for the S3 gateway endpoint (Amazon Linux's dnf repositories are S3 buckets of the region). Empty = no S3 endpoint (leave it empty when those route tables already route S3 through a gateway endpoint)."
  type        = list(string)
  default     = []
}

variable "bot_role_trusted_services" {
  description = "Services that may assume the bot's role (ec2.amazonaws.com for the example's instance; add ecs-tasks.amazonaws.com to run the bot as a task)."
  type        = list(string)
  default     = ["ec2.amazonaws.com"]
}

variable "tags" {
  description = "Tags for every resource this module creates."
  type        = map(string)
  default     = {}
}

variable "session_kms_key_arns" {
  description = "KMS keys bastions may use (kms:GenerateDataKey, kms:Decrypt): the cluster's ECS Exec key (executeCommandConfiguration.kmsKeyId) and the Session Manager preferences' key, when set. Must match aws.kms_key_arns in the bot's config."
  type        = list(string)
  default     = []
}

variable "session_log_bucket" {
  description = "S3 bucket of the Session Manager preferences' session logs, which bastions may write (s3:PutObject). Empty = none. Must match aws.session_log_bucket in the bot's config."
  type        = string
  default     = ""
}

variable "session_log_group" {
  description = "CloudWatch Logs group of the Session Manager preferences' session logs, which bastions may write. Empty = none. Must match aws.session_log_group in the bot's config."
  type        = string
  default     = ""
}

variable "credential_perimeter" {
  description = "The bastion boundary's in-VPC rules: calls with a bastion's credentials through a VPC endpoint must come from the VPC and the address they were delivered to. Set false where the endpoints live in a shared hub VPC (then list them in allowed_vpc_endpoint_ids). Keep it equal to aws.credential_perimeter in the bot's config."
  type        = bool
  default     = true
}

variable "exec_only_through_vpc_endpoint" {
  description = "The bastion boundary refuses ecs:ExecuteCommand that comes through no VPC endpoint. null = when this module makes the endpoints (create_vpc_endpoints). Set true only where an ecs endpoint with private DNS serves the bastions' VPC; keep it equal to aws.exec_through_vpc_endpoint in the bot's config."
  type        = bool
  default     = null
}

variable "bastion_egress_cidrs" {
  description = "The public addresses (CIDR blocks, e.g. your NAT gateways' Elastic IPs as \"203.0.113.7/32\") the bastions reach AWS through: the boundary refuses a bastion's credentials through no VPC endpoint from anywhere else. Empty = no such rule. Keep it equal to aws.bastion_egress_cidrs."
  type        = list(string)
  default     = []
}

variable "allowed_vpc_endpoint_ids" {
  description = "The VPC endpoints bastions may use (a hub VPC's, with credential_perimeter = false): the boundary refuses a bastion's credentials through any other endpoint. Empty = no such rule. Keep it equal to aws.allowed_vpc_endpoint_ids."
  type        = list(string)
  default     = []
}

variable "s3_reachable_without_endpoint" {
  description = "true when the bastions' subnets reach S3 without the gateway endpoint this module would make (a NAT, or a gateway endpoint already on their route tables). With create_vpc_endpoints and no endpoint_route_table_ids the plan fails unless this says so: bastions that cannot reach S3 cannot install the Session Manager plugin and never become ready."
  type        = bool
  default     = false
}
