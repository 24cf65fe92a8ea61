# scaledown and rebalancer run on a schedule: Cloud Scheduler POSTs to them with an OIDC token.
# Runs hold a lease in Firestore, so an overlapping or retried run does nothing twice.

resource "google_cloud_scheduler_job" "this" {
  for_each = local.schedules

  project          = var.project_id
  region           = var.region
  name             = "${local.prefix}-${each.key}"
  description      = "Runs jitr's ${each.key} function."
  schedule         = each.value
  time_zone        = var.schedule_time_zone
  attempt_deadline = "${local.functions[each.key].timeout_s}s"

  retry_config {
    retry_count = 0 # the next scheduled run is the retry
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.this[each.key].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.this["scheduler"].email
      audience              = google_cloudfunctions2_function.this[each.key].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invoker]
}
