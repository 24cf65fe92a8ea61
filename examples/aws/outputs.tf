output "webhook_url" {
  description = "Set this as the GitHub App's webhook URL."
  value       = module.jitr.webhook_url
}

output "broker_url" {
  description = "The URL runner VMs pull their JIT config from (null when every pool says handoff = \"metadata\")."
  value       = module.jitr.broker_url
}

output "function_names" {
  description = "The functions, by kind."
  value       = module.jitr.function_names
}

output "function_role_arns" {
  description = "Each function's role, by kind."
  value       = module.jitr.function_role_arns
}

output "jobs_queue_url" {
  description = "The jobs queue."
  value       = module.jitr.jobs_queue_url
}

output "lifecycle_queue_url" {
  description = "The lifecycle queue."
  value       = module.jitr.lifecycle_queue_url
}

output "table_name" {
  description = "The state table."
  value       = module.jitr.table_name
}

output "runner_instance_profile" {
  description = "The runners' instance profile."
  value       = module.jitr.runner_instance_profile
}

output "runner_security_group_id" {
  description = "The runners' security group."
  value       = module.jitr.runner_security_group_id
}

output "environment" {
  description = "The functions' environment, for `jitr doctor` run elsewhere."
  value       = module.jitr.environment
}
