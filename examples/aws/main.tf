# jitr on AWS: one pool of Linux x64 spot runners. Copy this directory, fill in
# terraform.tfvars (see terraform.tfvars.example), then `terraform init && terraform apply`.

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

module "jitr" {
  source = "../../infra/aws/terraform"

  name_prefix  = var.name_prefix
  bundle_path  = var.bundle_path
  architecture = var.architecture
  runtime      = var.runtime

  github_app_id  = var.github_app_id
  github_api_url = var.github_api_url
  # Existing secrets (from `jitr github-app create`), or values for the module to store.
  webhook_secret_arn                = var.webhook_secret_arn
  github_app_private_key_secret_arn = var.github_app_private_key_secret_arn
  webhook_secret                    = var.webhook_secret
  github_app_private_key            = var.github_app_private_key_path == null ? null : file(var.github_app_private_key_path)

  vpc_id = var.vpc_id
  pools = [
    {
      name          = var.pool_name
      labels        = var.pool_labels
      machine_types = var.machine_types
      subnet_ids    = var.subnet_ids
      image         = var.image
      disk_gb       = var.disk_gb
      max_runners   = var.max_runners
    },
  ]

  webhook_endpoint            = var.webhook_endpoint
  log_retention_days          = var.log_retention_days
  alarm_actions               = var.alarm_actions
  secret_recovery_window_days = var.secret_recovery_window_days
  jitr_settings               = var.jitr_settings
}
