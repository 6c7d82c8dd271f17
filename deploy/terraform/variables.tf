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
  description = "ECS clusters the bot may read and the bastions may exec into. Empty = every cluster of the account and region."
  type        = list(string)
  default     = []
}

variable "ami_parameter_prefix" {
  description = "Public SSM parameters the bot may read to find the bastion AMI (matches aws.ami_parameter in the bot's config)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/"
}

variable "create_vpc_endpoints" {
  description = "Create interface endpoints for ssm, ssmmessages and ec2messages, for subnets without a route to the internet."
  type        = bool
  default     = false
}

variable "endpoint_subnet_ids" {
  description = "Subnets for the VPC endpoints (one per availability zone), when create_vpc_endpoints is true."
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
