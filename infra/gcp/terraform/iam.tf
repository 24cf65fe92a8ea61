# One service account per function, holding exactly what that function calls (docs/gcp-configuration.md,
# IAM). infra/tests/gcp records every Google API call each function makes in an end-to-end run and
# checks it against these lists: every call is granted, every grant is used or has a stated reason.

locals {
  # Compute Engine permissions, through one custom role per function.
  compute_permissions = {
    webhook = []
    scaleup = [
      "compute.disks.create",                # the boot disk is created with the instance
      "compute.images.useReadOnly",          # pool images in this project (public images need no grant)
      "compute.instances.create",            # instances.insert
      "compute.instances.get",               # a launch that finds its instance already there (a retry)
      "compute.instances.setLabels",         # the instance carries labels
      "compute.instances.setMetadata",       # the startup script
      "compute.instances.setServiceAccount", # the runner service account
      "compute.subnetworks.use",             # the runner subnetwork (auto-mode or named)
      "compute.zoneOperations.get",          # zoneOperations.wait on the insert
    ]
    lifecycle  = ["compute.instances.delete"] # a surplus runner's VM
    scaledown  = ["compute.instances.delete", "compute.instances.list"]
    rebalancer = []
  }
  # Added to scaleup's role when runner VMs get an external IP.
  external_ip_permissions = ["compute.subnetworks.useExternalIp"]

  # Firestore: documents of the jitr collection (reads, conditional writes, queries).
  firestore_permissions = [
    "datastore.entities.create",
    "datastore.entities.delete",
    "datastore.entities.get",
    "datastore.entities.list",
    "datastore.entities.update",
  ]
  firestore_users = ["webhook", "scaleup", "lifecycle", "scaledown", "rebalancer"]

  # Topics each function publishes to (roles/pubsub.publisher on the topic: pubsub.topics.publish).
  publishes = {
    webhook    = ["jobs", "lifecycle"]
    scaleup    = ["jobs", "jobs-dead-letter"]      # delayed retries; poison messages
    lifecycle  = ["jobs", "lifecycle-dead-letter"] # the next waiting job; poison messages
    scaledown  = ["jobs"]                          # stuck jobs
    rebalancer = ["jobs"]                          # jobs without a runner
  }

  # Secrets each function reads (roles/secretmanager.secretAccessor on the secret).
  reads_secrets = {
    webhook    = ["webhook_secret"]
    scaleup    = ["github_app_private_key"]
    lifecycle  = ["github_app_private_key"]
    scaledown  = ["github_app_private_key"]
    rebalancer = ["github_app_private_key"]
  }

  custom_roles = {
    for name, _ in local.functions : name => distinct(concat(
      local.compute_permissions[name],
      name == "scaleup" && var.external_ip ? local.external_ip_permissions : [],
      contains(local.firestore_users, name) ? local.firestore_permissions : [],
    ))
  }
  role_prefix = replace(local.prefix, "-", "_")

  topic_grants = merge([
    for name, topics in local.publishes : { for topic in topics : "${name}/${topic}" => { function = name, topic = topic } }
  ]...)
  secret_grants = merge([
    for name, secrets in local.reads_secrets : { for secret in secrets : "${name}/${secret}" => { function = name, secret = secret } }
  ]...)
}

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

# scaleup attaches the runner account to the VMs it creates: iam.serviceAccounts.actAs on that
# account only.
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

# Cloud Build builds the function images as the build account (the role Google documents for a
# custom build service account of Cloud Run functions).
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/cloudbuild.builds.builder"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.this["build"].member
}
