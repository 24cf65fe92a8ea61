# One service account per function, holding exactly what permissions.tf lists for it, and the
# accounts of the runner VMs, the push subscriptions, Cloud Scheduler and Cloud Build.

resource "google_service_account" "this" {
  for_each = local.service_account_ids

  project      = var.project_id
  account_id   = each.value
  display_name = "jitr ${each.key}"
  description = lookup({
    runner    = "Attached to jitr's runner VMs: deletes its own VM, ships its logs."
    push      = "Pub/Sub push subscriptions authenticate to jitr's queue functions as this account."
    scheduler = "Cloud Scheduler authenticates to jitr's periodic functions as this account."
    build     = "Cloud Build builds jitr's function images as this account."
  }, each.key, "Runs jitr's ${each.key} function.")

  depends_on = [google_project_service.this]
}

resource "google_project_iam_custom_role" "function" {
  for_each = { for name, permissions in local.custom_roles : name => permissions if length(permissions) > 0 }

  project     = var.project_id
  role_id     = "${local.role_prefix}_${each.key}"
  title       = "jitr ${each.key} function"
  description = "Exactly the Compute Engine and Firestore permissions jitr's ${each.key} function uses."
  permissions = each.value
}

resource "google_project_iam_member" "function" {
  for_each = google_project_iam_custom_role.function

  project = var.project_id
  role    = each.value.name
  member  = google_service_account.this[each.key].member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_grants

  project = var.project_id
  topic   = local.all_topics[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.this[each.value.function].member
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_grants

  project   = var.project_id
  secret_id = local.secret_names[each.value.secret]
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.this[each.value.function].member

  depends_on = [google_secret_manager_secret.created]
}

# scaleup attaches the runner account to the VMs it creates, and so does scaledown where it fills
# warm pools (local.launchers): iam.serviceAccounts.actAs on that account only.
resource "google_project_iam_custom_role" "act_as" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_act_as_runner"
  title       = "jitr: attach the runner service account"
  description = "iam.serviceAccounts.actAs, granted on jitr's runner service account only."
  permissions = ["iam.serviceAccounts.actAs"]
}

resource "google_service_account_iam_member" "scaleup_acts_as_runner" {
  service_account_id = google_service_account.this["runner"].name
  role               = google_project_iam_custom_role.act_as.name
  member             = google_service_account.this["scaleup"].member
}

resource "google_service_account_iam_member" "scaledown_acts_as_runner" {
  count = contains(local.launchers, "scaledown") ? 1 : 0

  service_account_id = google_service_account.this["runner"].name
  role               = google_project_iam_custom_role.act_as.name
  member             = google_service_account.this["scaledown"].member
}

# The runner VM deletes itself when its job is done (the startup script's teardown). The grant is
# limited to instances named like jitr's runners; see docs/gcp-configuration.md (IAM) for what a
# job on the VM can do with it.
resource "google_project_iam_custom_role" "runner" {
  project     = var.project_id
  role_id     = "${local.role_prefix}_runner_self_delete"
  title       = "jitr runner: delete its own VM"
  description = "compute.instances.delete, granted with a condition on jitr's runner instance names."
  permissions = ["compute.instances.delete"]
}

resource "google_project_iam_member" "runner_self_delete" {
  project = var.project_id
  role    = google_project_iam_custom_role.runner.name
  member  = google_service_account.this["runner"].member

  condition {
    title       = "jitr runner instances"
    description = "Only instances named jitr-<pool>-<job>-<attempt>."
    expression  = "resource.name.extract(\"/instances/{name}\").startsWith(\"jitr-\")"
  }
}

resource "google_project_iam_member" "runner_log_writer" {
  count = var.runner_log_shipping ? 1 : 0

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.this["runner"].member
}

# Invocation: Pub/Sub pushes to the queue functions, Cloud Scheduler calls the periodic ones, both
# with OIDC tokens of their own accounts. The webhook's public invoker is in functions.tf.
resource "google_cloud_run_service_iam_member" "push_invoker" {
  for_each = local.queues

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this[each.value].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.this["push"].member
}

resource "google_cloud_run_service_iam_member" "scheduler_invoker" {
  for_each = local.schedules

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.this["scheduler"].member
}

# The Pub/Sub service agent mints the push subscriptions' OIDC tokens and forwards dead letters.
locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.this["push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Cloud Build builds the function images as the build account: it reads the source Cloud Run
# functions stages in its own bucket, pushes the image to Artifact Registry and writes build logs.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/artifactregistry.writer", "roles/logging.logWriter", "roles/storage.objectViewer"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.this["build"].member
}
