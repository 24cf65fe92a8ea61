output "broker_url" {
  description = "The URL runner VMs pull their JIT config from (handoff = \"broker\", the default; null when every pool says handoff = \"metadata\")."
  value       = local.broker_url
}

output "webhook_url" {
  description = "The GitHub App's webhook URL (the webhook function's URL)."
  value       = google_cloudfunctions2_function.this["webhook"].service_config[0].uri
}

output "function_urls" {
  description = "URL of each function."
  value       = { for name, function in google_cloudfunctions2_function.this : name => function.service_config[0].uri }
}

output "topics" {
  description = "Topic names: jobs, lifecycle and their dead-letter topics."
  value       = { for key, topic in local.all_topics : key => topic.name }
}

output "dead_letter_subscriptions" {
  description = "Subscriptions on the dead-letter topics, which `jitr status` peeks at."
  value       = { for queue, subscription in google_pubsub_subscription.dead_letter : queue => subscription.name }
}

output "service_accounts" {
  description = "Service account emails: one per function, plus runner, push, scheduler and build."
  value       = { for name, account in google_service_account.this : name => account.email }
}

output "runner_service_account" {
  description = "The account attached to runner VMs (JITR_GCP_SERVICE_ACCOUNT)."
  value       = google_service_account.this["runner"].email
}

output "secrets" {
  description = "Secret Manager resource names of the webhook secret and the App's private key."
  value       = local.secret_names
}

output "firestore_database" {
  description = "The Firestore database id."
  value       = local.firestore_database
}

output "settings" {
  description = "The JITR_* environment every function gets; with the local credentials of an operator, the same values let `jitr status` and `jitr doctor` read this deployment."
  value       = local.function_environment
}
