variable "region" {
  description = "The AWS region to deploy to."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name; change it to deploy twice in one account."
  type        = string
  default     = "jitr"
}

variable "tags" {
  description = "Tags on every resource (the provider's default_tags)."
  type        = map(string)
  default     = { "managed-with" = "terraform", "app" = "jitr" }
}

variable "bundle_path" {
  description = "The zip from `jitr bundle aws`."
  type        = string
  default     = "jitr-aws-lambda.zip"
}

variable "architecture" {
  description = "The bundle's --arch: x86_64 or arm64."
  type        = string
  default     = "x86_64"
}

variable "runtime" {
  description = "The bundle's --python as a Lambda runtime: python3.12 or python3.13."
  type        = string
  default     = "python3.12"
}

variable "github_app_id" {
  description = "The GitHub App's id."
  type        = string
}

variable "github_api_url" {
  description = "GitHub's API (https://HOST/api/v3 for GitHub Enterprise Server)."
  type        = string
  default     = "https://api.github.com"
}

variable "webhook_secret_arn" {
  description = "An existing Secrets Manager secret holding the App's webhook secret (what `jitr github-app create` stores). Or set webhook_secret."
  type        = string
  default     = null
}

variable "github_app_private_key_secret_arn" {
  description = "An existing Secrets Manager secret holding the App's private key. Or set github_app_private_key_path."
  type        = string
  default     = null
}

variable "webhook_secret" {
  description = "The App's webhook secret, for the module to store in Secrets Manager (it is then in the Terraform state too)."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_app_private_key_path" {
  description = "Path of the App's private key (.pem), for the module to store in Secrets Manager (it is then in the Terraform state too)."
  type        = string
  default     = null
}

variable "vpc_id" {
  description = "The VPC of the runner subnets."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for runner VMs (private subnets with a NAT gateway, ideally in several availability zones)."
  type        = list(string)
}

variable "image" {
  description = "The runners' AMI (see docs/images.md), or resolve:ssm:<parameter>."
  type        = string
}

variable "pool_name" {
  description = "The pool's name."
  type        = string
  default     = "linux-x64"
}

variable "pool_labels" {
  description = "The labels a job's runs-on must match."
  type        = list(string)
  default     = ["self-hosted", "linux", "x64"]
}

variable "machine_types" {
  description = "EC2 instance types, tried in order."
  type        = list(string)
  default     = ["m7i.large", "m6i.large", "m5.large"]
}

variable "disk_gb" {
  description = "Root volume size of each runner."
  type        = number
  default     = 40
}

variable "max_runners" {
  description = "Most runners of the pool at once."
  type        = number
  default     = 10
}

variable "webhook_endpoint" {
  description = "function_url or api_gateway."
  type        = string
  default     = "function_url"
}

variable "log_retention_days" {
  description = "Retention of the functions' logs, in days."
  type        = number
  default     = 30
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified by the alarms."
  type        = list(string)
  default     = []
}

variable "secret_recovery_window_days" {
  description = "Recovery window of the secrets on destroy (0: delete at once)."
  type        = number
  default     = 7
}

variable "jitr_settings" {
  description = "Further JITR_* settings, e.g. { JITR_ALLOWED_OWNERS = \"my-org\" }."
  type        = map(string)
  default     = {}
}
