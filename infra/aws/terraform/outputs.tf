output "webhook_url" {
  description = "The GitHub App's webhook URL (content type application/json)."
  value       = local.webhook_url
}

output "broker_url" {
  description = "The URL runner VMs pull their JIT config from (handoff = \"broker\", the default; null when every pool says handoff = \"metadata\")."
  value       = local.broker_url
}

output "function_names" {
  description = "The functions' names, by kind (webhook, scaleup, lifecycle, scaledown, rebalancer)."
  value       = { for kind, f in aws_lambda_function.function : kind => f.function_name }
}

output "function_role_arns" {
  description = "Each function's execution role, by kind."
  value       = { for kind, r in aws_iam_role.function : kind => r.arn }
}

output "jobs_queue_url" {
  description = "URL of the jobs queue."
  value       = aws_sqs_queue.main["jobs"].url
}

output "lifecycle_queue_url" {
  description = "URL of the lifecycle queue."
  value       = aws_sqs_queue.main["lifecycle"].url
}

output "dead_letter_queue_urls" {
  description = "URLs of the dead-letter queues, by queue (jobs, lifecycle)."
  value       = { for name, q in aws_sqs_queue.dead_letter : name => q.url }
}

output "table_name" {
  description = "The DynamoDB state table."
  value       = aws_dynamodb_table.state.name
}

output "webhook_secret_arn" {
  description = "The secret holding the webhook secret."
  value       = local.webhook_secret_arn
}

output "github_app_private_key_secret_arn" {
  description = "The secret holding the GitHub App's private key."
  value       = local.app_key_secret_arn
}

output "runner_role_arn" {
  description = "The runner VMs' role."
  value       = aws_iam_role.runner.arn
}

output "runner_instance_profile" {
  description = "The runner VMs' instance profile (name)."
  value       = aws_iam_instance_profile.runner.name
}

output "runner_security_group_id" {
  description = "The runner VMs' security group."
  value       = aws_security_group.runners.id
}

output "environment" {
  description = "The environment every function gets: for `jitr doctor` or `jitr status` run elsewhere against this deployment."
  value       = local.environment
}
