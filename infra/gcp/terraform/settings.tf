# Names and the functions' settings. Everything here is derived from variables only (no resource
# attributes), so the settings a deployment gets can be evaluated without a provider; the tests in
# infra/tests/gcp load this file and variables.tf into `terraform console` with the example's
# values and check jitr's settings loader accepts the result.

locals {
  prefix = var.name_prefix
  labels = merge(var.labels, { "managed-by" = "jitr" })

  # The five targets of `jitr bundle gcp` (jitr_functions.gcp), and the broker unless every pool
  # says handoff = "metadata" (a pool's handoff is "broker" by default; "metadata" is for VMs that
  # cannot reach the broker's Cloud Run URL): entry point, timeout (s) and the instance limit
  # used when max_instances does not name the function.
  broker_enabled = anytrue([for pool in var.pools : coalesce(pool.handoff, "broker") == "broker"])
  # Cloud Run's deterministic URL of the broker function's service (SERVICE-PROJECT_NUMBER.REGION),
  # known before the function exists: every function's settings carry it, scaleup renders it into
  # the runners' startup scripts. Without project_number it is null, and the functions'
  # precondition (functions.tf) refuses the plan with a message saying so.
  broker_url = local.broker_enabled && var.project_number != null ? "https://${local.prefix}-broker-${var.project_number}.${var.region}.run.app" : null
  functions = merge({
    webhook    = { entry_point = "webhook", timeout_s = 10, max_instances = 20 }
    scaleup    = { entry_point = "scaleup", timeout_s = 300, max_instances = 20 }
    lifecycle  = { entry_point = "lifecycle", timeout_s = 120, max_instances = 10 }
    scaledown  = { entry_point = "scaledown", timeout_s = 300, max_instances = 1 }
    rebalancer = { entry_point = "rebalancer", timeout_s = 60, max_instances = 1 }
  }, local.broker_enabled ? { broker = { entry_point = "broker", timeout_s = 60, max_instances = 20 + local.warm_vms } } : {})
  # Warm VMs at most (docs/warm-pools.md): each holds one broker request, so the broker gets as
  # many instances more.
  warm_vms = sum(concat([0], [
    for pool in var.pools : max(concat([coalesce(pool.warm, 0)], [for w in coalesce(pool.warm_windows, []) : w.count])...)
  ]))
  # Queue topic -> the function its push subscription delivers to.
  queues = { jobs = "scaleup", lifecycle = "lifecycle" }
  # Scheduled function -> cron schedule.
  schedules = { scaledown = var.scaledown_schedule, rebalancer = var.rebalancer_schedule }

  topic_names             = { for queue, _ in local.queues : queue => "${local.prefix}-${queue}" }
  dead_letter_topic_names = { for queue, _ in local.queues : queue => "${local.prefix}-${queue}-dead-letter" }

  service_account_ids    = merge({ for name, _ in local.functions : name => "${local.prefix}-${name}" }, { runner = "${local.prefix}-runner", push = "${local.prefix}-push", scheduler = "${local.prefix}-scheduler", build = "${local.prefix}-build" })
  service_account_emails = { for name, id in local.service_account_ids : name => "${id}@${var.project_id}.iam.gserviceaccount.com" }

  # Secret Manager secrets: an existing one (by id or resource name) or one the module creates.
  secret_inputs = {
    webhook_secret         = { id = var.webhook_secret_id, created = "${local.prefix}-webhook-secret" }
    github_app_private_key = { id = var.github_app_private_key_secret_id, created = "${local.prefix}-github-app-key" }
  }
  secret_names = {
    for name, secret in local.secret_inputs : name => (
      secret.id == null ? "projects/${var.project_id}/secrets/${secret.created}" :
      startswith(secret.id, "projects/") ? secret.id : "projects/${var.project_id}/secrets/${secret.id}"
    )
  }

  # JITR_POOLS: each pool as jitr reads it; null attributes are left out so jitr's defaults apply,
  # but the handoff is always written out, resolved here, so the functions never depend on
  # jitr's default.
  pool_settings = [
    for pool in var.pools : {
      for key, value in {
        name                  = pool.name
        labels                = pool.labels
        machine_types         = pool.machine_types
        image                 = pool.image
        placements            = pool.zones
        spot                  = pool.spot
        on_demand_fallback    = pool.on_demand_fallback
        disk_gb               = pool.disk_gb
        max_runners           = pool.max_runners
        runner_group          = pool.runner_group
        org_scope             = pool.org_scope
        priority              = pool.priority
        allow_public          = pool.allow_public
        arch                  = pool.arch
        max_lifetime_s        = pool.max_lifetime_s
        rerun_on_interruption = pool.rerun_on_interruption
        machine_type_labels   = pool.machine_type_labels
        machine_sizes         = pool.machine_sizes
        handoff               = coalesce(pool.handoff, "broker")
        warm                  = pool.warm
        warm_max_idle_s       = pool.warm_max_idle_s
        warm_windows          = pool.warm_windows
        options               = pool.options == null ? null : { for option, setting in pool.options : option => setting if setting != null }
      } : key => value if value != null
    }
  ]

  # Every function reads the same settings (docs/gcp-deploy.md, "Settings").
  function_environment = merge(
    {
      JITR_PROVIDER                               = "gcp"
      JITR_POOLS                                  = jsonencode(local.pool_settings)
      JITR_MAX_RUNNERS                            = tostring(var.max_runners)
      JITR_ALLOWED_OWNERS                         = join(",", var.allowed_owners)
      JITR_ALLOWED_REPOS                          = join(",", var.allowed_repos)
      JITR_GITHUB_APP_ID                          = var.github_app_id
      JITR_SECRETS_WEBHOOK_SECRET                 = local.secret_names.webhook_secret
      JITR_SECRETS_GITHUB_APP_PRIVATE_KEY         = local.secret_names.github_app_private_key
      JITR_GCP_PROJECT                            = var.project_id
      JITR_GCP_ZONES                              = join(",", var.zones)
      JITR_GCP_NETWORK                            = var.network
      JITR_GCP_EXTERNAL_IP                        = tostring(var.external_ip)
      JITR_GCP_SERVICE_ACCOUNT                    = local.service_account_emails.runner
      JITR_GCP_JOBS_TOPIC                         = local.topic_names.jobs
      JITR_GCP_LIFECYCLE_TOPIC                    = local.topic_names.lifecycle
      JITR_GCP_JOBS_DEAD_LETTER_TOPIC             = local.dead_letter_topic_names.jobs
      JITR_GCP_LIFECYCLE_DEAD_LETTER_TOPIC        = local.dead_letter_topic_names.lifecycle
      JITR_GCP_JOBS_DEAD_LETTER_SUBSCRIPTION      = local.dead_letter_topic_names.jobs
      JITR_GCP_LIFECYCLE_DEAD_LETTER_SUBSCRIPTION = local.dead_letter_topic_names.lifecycle
      JITR_GCP_MAX_DELIVERIES                     = tostring(var.max_deliveries)
      JITR_GCP_FIRESTORE_DATABASE                 = var.firestore_database
      JITR_GCP_FIRESTORE_COLLECTION               = var.firestore_collection
    },
    var.subnetwork == null ? {} : { JITR_GCP_SUBNETWORK = var.subnetwork },
    local.broker_url == null ? {} : { JITR_BROKER_URL = local.broker_url },
    var.github_api_url == null ? {} : { JITR_GITHUB_API_URL = var.github_api_url },
    var.extra_settings,
  )
}
