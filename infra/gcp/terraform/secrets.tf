# The GitHub App's two secrets. Given by id (written by `jitr github-app create`, or by you) they
# are only referenced; given by value the module creates them, and the values are in the state.

locals {
  secret_values = {
    webhook_secret         = var.webhook_secret
    github_app_private_key = var.github_app_private_key
  }
  # Which secrets the module creates; known at plan time (a sensitive value's nullness is not).
  created_secrets = toset([for name, secret in local.secret_inputs : name if secret.id == null])
}

resource "google_secret_manager_secret" "created" {
  for_each = local.created_secrets

  project   = var.project_id
  secret_id = local.secret_inputs[each.key].created
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]

  lifecycle {
    precondition {
      condition     = local.secret_values[each.key] != null
      error_message = "${each.key}: give the id of an existing secret (${each.key == "webhook_secret" ? "webhook_secret_id" : "github_app_private_key_secret_id"}) or its value."
    }
  }
}

resource "google_secret_manager_secret_version" "created" {
  for_each = local.created_secrets

  secret      = google_secret_manager_secret.created[each.key].id
  secret_data = local.secret_values[each.key]
}
