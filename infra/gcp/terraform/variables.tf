# -- where ---------------------------------------------------------------------------------------

variable "project_id" {
  description = "Project that holds the functions, topics, Firestore database, secrets and runner VMs."
  type        = string

  validation {
    condition     = can(regex("^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id such as ci-runners (not a project number)."
  }
}

variable "project_number" {
  description = "The project's number (gcloud projects describe PROJECT_ID --format='value(projectNumber)'): required unless every pool says handoff = \"metadata\" (a pool's handoff is \"broker\" by default), for the broker function's Cloud Run URL (https://<name_prefix>-broker-<project number>.<region>.run.app), which the runners call."
  type        = string
  default     = null

  validation {
    condition     = var.project_number == null || can(regex("^[0-9]{6,20}$", var.project_number))
    error_message = "project_number is the project's number (digits), not its id."
  }
}

variable "region" {
  description = "Region of the Cloud Run functions, the Cloud Scheduler jobs and the source bucket (us-central1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name such as us-central1."
  }
}

variable "zones" {
  description = "JITR_GCP_ZONES: the zone a pool without its own zones launches in (the first one listed)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for zone in var.zones : can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", zone))])
    error_message = "zones must be zone names such as us-central1-a."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, topics, service accounts, secrets, roles)."
  type        = string
  default     = "jitr"

  validation {
    # The longest service account id is "<prefix>-rebalancer" (30 characters at most).
    condition     = can(regex("^[a-z][a-z0-9-]{0,17}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2 to 19 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels (functions, topics, secrets, bucket, jobs)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key, value in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value))])
    error_message = "labels must have lower-case keys starting with a letter and lower-case values (GCP's label rules)."
  }
}

variable "enable_apis" {
  description = "Enable the APIs the deployment uses (google_project_service). Turn off where a project factory manages them."
  type        = bool
  default     = true
}

# -- the function source -------------------------------------------------------------------------

variable "function_source" {
  description = "The output of `jitr bundle gcp --out DIR`: that directory (zipped by the module) or a zip of its contents."
  type        = string

  validation {
    condition     = length(trimspace(var.function_source)) > 0
    error_message = "function_source must name the directory written by `jitr bundle gcp` (or a zip of it)."
  }
}

variable "runtime" {
  description = "Python runtime of the functions; build the bundle with the same Python version."
  type        = string
  default     = "python312"

  validation {
    condition     = contains(["python312", "python313"], var.runtime)
    error_message = "runtime must be python312 or python313."
  }
}

variable "min_instances" {
  description = "Minimum instances per function. 1 on webhook keeps GitHub's 10 s budget free of cold starts; 1 on scaleup removes its cold start (about 1.5 s) from every job's wait for a runner."
  type        = map(number)
  default     = { webhook = 1, scaleup = 0, lifecycle = 0, scaledown = 0, rebalancer = 0 }

  validation {
    condition     = alltrue([for name, count in var.min_instances : contains(["webhook", "scaleup", "lifecycle", "scaledown", "rebalancer"], name) && count >= 0 && floor(count) == count])
    error_message = "min_instances keys are webhook, scaleup, lifecycle, scaledown and rebalancer; values are whole numbers of at least 0."
  }
}

variable "max_instances" {
  description = "Maximum instances per function (functions not listed keep the module's default)."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for name, count in var.max_instances : contains(["webhook", "scaleup", "lifecycle", "scaledown", "rebalancer"], name) && count >= 1 && floor(count) == count])
    error_message = "max_instances keys are webhook, scaleup, lifecycle, scaledown and rebalancer; values are whole numbers of at least 1."
  }
}

variable "function_memory" {
  description = "Memory of each function instance."
  type        = string
  default     = "512Mi"
}

# -- the GitHub App --------------------------------------------------------------------------------

variable "github_app_id" {
  description = "JITR_GITHUB_APP_ID: the GitHub App's id (or client id)."
  type        = string

  validation {
    condition     = can(regex("^([0-9]+|Iv[A-Za-z0-9.]+)$", var.github_app_id))
    error_message = "github_app_id must be the App's numeric id or its client id (Iv...)."
  }
}

variable "github_api_url" {
  description = "JITR_GITHUB_API_URL: https://HOST/api/v3 on GitHub Enterprise Server; null for github.com."
  type        = string
  default     = null

  validation {
    condition     = var.github_api_url == null || can(regex("^https?://", var.github_api_url))
    error_message = "github_api_url must be an http(s) URL."
  }
}

variable "webhook_secret_id" {
  description = "An existing Secret Manager secret holding the App's webhook secret (S or projects/P/secrets/S), e.g. written by `jitr github-app create`. Give this or webhook_secret."
  type        = string
  default     = null
}

variable "webhook_secret" {
  description = "The webhook secret's value: the module creates the secret <prefix>-webhook-secret. The value is kept in the Terraform state; prefer webhook_secret_id."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_app_private_key_secret_id" {
  description = "An existing Secret Manager secret holding the App's private key (PEM). Give this or github_app_private_key."
  type        = string
  default     = null
}

variable "github_app_private_key" {
  description = "The App's private key (PEM): the module creates the secret <prefix>-github-app-key. Kept in the Terraform state; prefer github_app_private_key_secret_id."
  type        = string
  default     = null
  sensitive   = true
}

variable "allowed_owners" {
  description = "JITR_ALLOWED_OWNERS: organisations or users whose jobs are served (empty, with allowed_repos empty: every installation)."
  type        = list(string)
  default     = []
}

variable "allowed_repos" {
  description = "JITR_ALLOWED_REPOS: owner/name repositories whose jobs are served."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for repo in var.allowed_repos : can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$", repo))])
    error_message = "allowed_repos must be owner/name repositories."
  }
}

# -- pools -----------------------------------------------------------------------------------------

variable "pools" {
  description = <<-EOT
    The runner pools, rendered into JITR_POOLS as jitr reads it (docs/embedded-serve.md, [[pools]]).
    An attribute left null takes jitr's default. `zones` become the pool's `placements`: the
    zones scale-up walks, in order, on capacity errors (none: the first of `zones` above).
    `options.log_shipping = false` turns off shipping the VM's logs to Cloud Logging;
    `options.network` / `options.subnetwork` put the pool's VMs on their own VPC network or
    subnetwork instead of `network` / `subnetwork` below (a pool naming only its own network
    takes that network's auto-mode subnetwork). The module's firewall rules are made on `network`
    and on every pool's own network. `machine_type_labels` and `machine_sizes` let a job pick its
    machine type by label (docs/embedded-serve.md, "Sizing from labels"). `handoff` is "broker"
    (the default: the VMs pull their JIT config from the broker function with their identity
    token, so their startup script holds no secret; needs project_number) or "metadata" (the JIT
    config is in the startup-script metadata, for VMs that cannot reach the broker's Cloud Run
    URL); the broker is deployed unless every pool says "metadata" (docs/embedded-serve.md, "The
    JIT config handoff"). `warm`, `warm_windows` and `warm_max_idle_s` keep booted VMs waiting at
    the broker for jobs (not with handoff = "metadata"; docs/warm-pools.md).
    `rerun_on_interruption` asks GitHub to re-run, once per attempt and on-demand, a job it failed
    because GCE preempted its spot VM (the App needs the Actions write permission;
    docs/embedded-serve.md, "Spot interruptions").
  EOT
  type = list(object({
    name                  = string
    labels                = list(string)
    machine_types         = list(string)
    image                 = string
    zones                 = optional(list(string))
    spot                  = optional(bool)
    on_demand_fallback    = optional(bool)
    disk_gb               = optional(number)
    max_runners           = optional(number)
    runner_group          = optional(string)
    org_scope             = optional(bool)
    priority              = optional(number)
    allow_public          = optional(bool)
    arch                  = optional(string)
    max_lifetime_s        = optional(number)
    rerun_on_interruption = optional(bool)
    machine_type_labels   = optional(list(string))
    machine_sizes = optional(list(object({
      machine_type = string
      cpu          = number
      ram          = number
    })))
    handoff         = optional(string)
    warm            = optional(number)
    warm_max_idle_s = optional(number)
    warm_windows = optional(list(object({
      days       = list(string)
      start_hour = number
      end_hour   = number
      count      = number
    })))
    options = optional(object({
      log_shipping = optional(bool)
      network      = optional(string)
      subnetwork   = optional(string)
    }))
  }))

  validation {
    condition     = length(var.pools) > 0
    error_message = "pools must list at least one pool."
  }
  validation {
    condition     = alltrue([for pool in var.pools : contains(["broker", "metadata"], coalesce(pool.handoff, "broker"))])
    error_message = "a pool's handoff is \"broker\" (the default) or \"metadata\"."
  }
  validation {
    condition = alltrue([
      for pool in var.pools : coalesce(pool.handoff, "broker") == "broker"
      || (coalesce(pool.warm, 0) == 0 && alltrue([for w in coalesce(pool.warm_windows, []) : w.count == 0]))
    ])
    error_message = "a pool with warm VMs (warm or warm_windows) needs the broker handoff (leave handoff unset, or \"broker\"): warm VMs wait at the broker for their JIT config; handoff = \"metadata\" has no warm VMs."
  }
  validation {
    condition     = length(distinct([for pool in var.pools : pool.name])) == length(var.pools)
    error_message = "pool names must be unique."
  }
  validation {
    condition     = alltrue([for pool in var.pools : can(regex("^[a-z0-9][a-z0-9-]{0,31}$", pool.name))])
    error_message = "a pool name is [a-z0-9][a-z0-9-]*, at most 32 characters (it is part of every runner name)."
  }
  validation {
    condition     = alltrue([for pool in var.pools : contains([for label in pool.labels : lower(label)], "self-hosted")])
    error_message = "every pool's labels must include self-hosted."
  }
  validation {
    condition     = alltrue([for pool in var.pools : length(pool.machine_types) > 0])
    error_message = "every pool must list at least one machine type."
  }
  validation {
    condition     = alltrue([for pool in var.pools : length(trimspace(pool.image)) > 0])
    error_message = "every pool needs an image (projects/P/global/images/family/F or an image name of the project)."
  }
  validation {
    condition     = alltrue(flatten([for pool in var.pools : [for zone in coalesce(pool.zones, []) : can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", zone))]]))
    error_message = "a pool's zones must be zone names such as us-central1-a."
  }
  validation {
    condition     = alltrue([for pool in var.pools : pool.disk_gb == null || try(pool.disk_gb >= 8, false)])
    error_message = "disk_gb must be at least 8."
  }
  validation {
    condition     = alltrue([for pool in var.pools : pool.max_runners == null || try(pool.max_runners >= 0, false)])
    error_message = "max_runners must be at least 0 (0 pauses the pool)."
  }
  validation {
    condition     = alltrue([for pool in var.pools : pool.arch == null || contains(["x64", "arm64"], coalesce(pool.arch, "x64"))])
    error_message = "arch must be x64 or arm64."
  }
  validation {
    condition     = alltrue([for pool in var.pools : pool.max_lifetime_s == null || try(pool.max_lifetime_s >= 300, false)])
    error_message = "max_lifetime_s must be at least 300."
  }
}

variable "max_runners" {
  description = "JITR_MAX_RUNNERS: runners in flight over all pools."
  type        = number
  default     = 100

  validation {
    condition     = var.max_runners >= 1 && floor(var.max_runners) == var.max_runners
    error_message = "max_runners must be a whole number of at least 1."
  }
}

variable "extra_settings" {
  description = "Further JITR_* variables for every function (JITR_LOG_LEVEL, JITR_BOOT_TIMEOUT_S, JITR_GCP_DISK_TYPE, ...); see docs/embedded-serve.md and docs/gcp-configuration.md."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name, _ in var.extra_settings : can(regex("^JITR_[A-Z0-9_]+$", name))])
    error_message = "extra_settings keys must be JITR_* variable names."
  }
  validation {
    condition     = !contains(keys(var.extra_settings), "JITR_POOLS")
    error_message = "extra_settings must not set JITR_POOLS: give the pools in pools, from which the module also derives what the functions may do (warm pools let scaledown launch VMs)."
  }
}

# -- runner network ------------------------------------------------------------------------------

variable "network" {
  description = "JITR_GCP_NETWORK: VPC network of the runner VMs (a name, or projects/P/global/networks/N for a shared VPC)."
  type        = string
  default     = "default"
}

variable "subnetwork" {
  description = "JITR_GCP_SUBNETWORK: subnetwork of the runner VMs; a bare name is looked up in each launch zone's region. null: the network's auto-mode subnetwork."
  type        = string
  default     = null
}

variable "external_ip" {
  description = "JITR_GCP_EXTERNAL_IP: give runner VMs an ephemeral external IP. Without one the subnetwork needs Cloud NAT to reach GitHub."
  type        = bool
  default     = false
}

variable "manage_firewall" {
  description = "Create the runner firewall rules: allow egress to TCP 443 and 80 and DNS (53), deny other egress and all ingress, for VMs running as the runner service account."
  type        = bool
  default     = true
}

variable "runner_egress_ranges" {
  description = "Destination ranges the runner VMs may reach on 443, 80 and 53."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "runner_log_shipping" {
  description = "Grant the runner service account roles/logging.logWriter, which the startup script's log shipping needs (a pool may still turn shipping off)."
  type        = bool
  default     = true
}

# -- queues, state store, schedules ---------------------------------------------------------------

variable "max_deliveries" {
  description = "Deliveries of one message before Pub/Sub dead-letters it (JITR_GCP_MAX_DELIVERIES; Pub/Sub allows 5 to 100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_deliveries >= 5 && var.max_deliveries <= 100 && floor(var.max_deliveries) == var.max_deliveries
    error_message = "max_deliveries must be a whole number from 5 to 100 (Pub/Sub's bounds for a dead-letter policy)."
  }
}

variable "create_firestore_database" {
  description = "Create the Firestore database. A project has one (default) database: set false when it exists already."
  type        = bool
  default     = true
}

variable "firestore_database" {
  description = "JITR_GCP_FIRESTORE_DATABASE: the Firestore (Native mode) database id."
  type        = string
  default     = "(default)"

  validation {
    condition     = can(regex("^(\\(default\\)|[a-z][a-z0-9-]{2,61}[a-z0-9])$", var.firestore_database))
    error_message = "firestore_database must be (default) or a database id."
  }
}

variable "firestore_location" {
  description = "Location of a new Firestore database (a region such as us-central1, or a multi-region such as nam5). null: the region."
  type        = string
  default     = null
}

variable "firestore_collection" {
  description = "JITR_GCP_FIRESTORE_COLLECTION: the collection (and collection group of the indexes and TTL policy)."
  type        = string
  default     = "jitr"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$", var.firestore_collection))
    error_message = "firestore_collection must be a collection id."
  }
}

variable "firestore_indexes_file" {
  description = "The Firebase-format index file jitr's queries need. null: packages/jitr-gcp/src/jitr_gcp/firestore.indexes.json of the repository this module is in."
  type        = string
  default     = null
}

variable "scaledown_schedule" {
  description = "Cron schedule (Cloud Scheduler) of the scaledown function."
  type        = string
  default     = "*/5 * * * *"
}

variable "rebalancer_schedule" {
  description = "Cron schedule (Cloud Scheduler) of the rebalancer function."
  type        = string
  default     = "* * * * *"
}

variable "schedule_time_zone" {
  description = "Time zone of the schedules."
  type        = string
  default     = "Etc/UTC"
}

# -- metrics ---------------------------------------------------------------------------------------

variable "create_dashboard" {
  description = "Create a Cloud Monitoring dashboard of jitr's metrics (docs/metrics.md)."
  type        = bool
  default     = true
}

variable "create_alerts" {
  description = "Create alert policies on dead letters and on runners exiting without a job."
  type        = bool
  default     = true
}

variable "alert_notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) the alert policies notify."
  type        = list(string)
  default     = []
}

variable "no_job_exit_threshold" {
  description = "Runners of one pool exiting without a job within 15 minutes that fire the no-job-exits alert."
  type        = number
  default     = 2

  validation {
    condition     = var.no_job_exit_threshold >= 1
    error_message = "no_job_exit_threshold must be at least 1."
  }
}
