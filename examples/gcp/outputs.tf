output "webhook_url" {
  description = "Set this as the GitHub App's webhook URL."
  value       = module.jitr.webhook_url
}

output "topics" {
  description = "The queue and dead-letter topics."
  value       = module.jitr.topics
}

output "service_accounts" {
  description = "The service accounts the module created."
  value       = module.jitr.service_accounts
}

output "settings" {
  description = "The JITR_* settings of the functions (for `jitr status` and `jitr doctor`)."
  value       = module.jitr.settings
}
