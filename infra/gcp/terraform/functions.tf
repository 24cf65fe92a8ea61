# The five Cloud Run functions (2nd gen), all built from the one source bundle, each running as
# its own service account. All are HTTP functions (they answer anything but POST with 405).

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Only the webhook (GitHub calls it from the internet) and the broker (runner VMs call it) allow all ingress; the others take internal traffic only (Pub/Sub push, Cloud Scheduler).
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = "${local.prefix}-${each.key}"
  description = "jitr ${each.key} (entry point ${each.value.entry_point})"
  labels      = local.labels

  build_config {
    runtime         = var.runtime
    entry_point     = each.value.entry_point
    service_account = google_service_account.this["build"].id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.this[each.key].email
    available_memory      = var.function_memory
    timeout_seconds       = each.value.timeout_s
    min_instance_count    = lookup(var.min_instances, each.key, 0)
    max_instance_count    = lookup(var.max_instances, each.key, each.value.max_instances)
    # GitHub calls the webhook from the internet; Pub/Sub push and Cloud Scheduler of the same
    # project count as internal traffic.
    ingress_settings                 = contains(["webhook", "broker"], each.key) ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_environment
    max_instance_request_concurrency = 1
  }

  lifecycle {
    precondition {
      condition     = length(var.zones) > 0 || alltrue([for pool in var.pools : length(coalesce(pool.zones, [])) > 0])
      error_message = "every pool needs zones, or zones (JITR_GCP_ZONES) must name the default zone."
    }
    precondition {
      condition     = !local.broker_enabled || var.project_number != null
      error_message = "project_number is required unless every pool says handoff = \"metadata\": a pool's handoff is \"broker\" by default, and the broker's URL is built from the project number (gcloud projects describe PROJECT_ID --format='value(projectNumber)')."
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_secret_manager_secret_version.created,
  ]
}

# GitHub cannot authenticate to Google: the webhook is public, and every delivery is checked
# against its X-Hub-Signature-256 HMAC before anything else.
resource "google_cloud_run_service_iam_member" "webhook_public" {
  #checkov:skip=CKV_GCP_102:GitHub's webhook deliveries carry no Google identity; the function verifies each delivery's HMAC signature.
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this["webhook"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Runner VMs call the broker without a Google identity on the request: the broker verifies the
# VM's identity token in the body (audience, project, signature) before anything else.
resource "google_cloud_run_service_iam_member" "broker_public" {
  #checkov:skip=CKV_GCP_102:Runner VMs send their identity token in the request body, which the broker verifies itself.
  count    = local.broker_enabled ? 1 : 0
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this["broker"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
