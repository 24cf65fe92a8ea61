# -- naming and tagging ---------------------------------------------------------------------------

variable "name_prefix" {
  description = "Prefix of every resource name (functions, roles, queues, table, secrets, log groups), so that several deployments can share an account. Also the value of the `jitr:deployment` tag on runner VMs, which scopes each deployment's EC2 permissions to its own VMs."
  type        = string
  default     = "jitr"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-24 characters: lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "tags" {
  description = "Tags on every resource the module creates (not on runner VMs: see runner_tags)."
  type        = map(string)
  default     = {}
}

# -- the functions ----------------------------------------------------------------------------------

variable "bundle_path" {
  description = "Path of the zip that `jitr bundle aws` wrote. All five functions run from it; a new zip (new hash) updates them."
  type        = string

  validation {
    condition     = endswith(var.bundle_path, ".zip")
    error_message = "bundle_path must name the .zip file written by `jitr bundle aws`."
  }
}

variable "architecture" {
  description = "The functions' architecture: the `--arch` the bundle was built with (x86_64 or arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64, as given to `jitr bundle aws --arch`."
  }
}

variable "runtime" {
  description = "The functions' Python runtime: the `--python` the bundle was built for (python3.12 or python3.13)."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.runtime)
    error_message = "runtime must be python3.12 or python3.13, as given to `jitr bundle aws --python`."
  }
}

variable "function_settings" {
  description = "Per-function overrides of timeout (seconds), memory (MB) and reserved concurrency (null: unreserved). Keys: webhook, scaleup, lifecycle, scaledown, rebalancer. Defaults follow docs/aws-deploy.md; keep scaledown under 240 s and rebalancer under 55 s (their leases)."
  type = map(object({
    timeout_s            = optional(number)
    memory_mb            = optional(number)
    reserved_concurrency = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for k in keys(var.function_settings) : contains(["webhook", "scaleup", "lifecycle", "scaledown", "rebalancer"], k)])
    error_message = "function_settings keys must be webhook, scaleup, lifecycle, scaledown or rebalancer."
  }
  validation {
    condition = alltrue([for k, v in var.function_settings : v.timeout_s == null || try(
      v.timeout_s >= 3 && v.timeout_s <= lookup({ webhook = 10, scaleup = 900, lifecycle = 900, scaledown = 240, rebalancer = 55 }, k, 900), false
    )])
    error_message = "timeouts must be at least 3 s, at most 10 s for webhook (GitHub gives up after 10 s), 240 s for scaledown and 55 s for rebalancer (their leases), 900 s otherwise."
  }
  validation {
    condition     = alltrue([for v in values(var.function_settings) : v.memory_mb == null || try(v.memory_mb >= 128 && v.memory_mb <= 10240, false)])
    error_message = "memory_mb must be between 128 and 10240."
  }
  validation {
    condition     = alltrue([for v in values(var.function_settings) : v.reserved_concurrency == null || try(v.reserved_concurrency >= 0, false)])
    error_message = "reserved_concurrency must be 0 or more (null: unreserved)."
  }
}

variable "snapstart" {
  description = "Lambda SnapStart: each deployment publishes a version of every function, whose INIT (settings, plugin discovery, imports: see docs/aws-deploy.md#snapstart) runs once and is snapshotted; new execution environments resume from the snapshot instead of starting cold. The triggers then invoke each function through its alias `live`. Billed for the snapshot's cache and for each restore; see docs/aws-deploy.md#snapstart."
  type        = bool
  default     = false
}

variable "log_level" {
  description = "jitr's log level in the functions (JITR_LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "webhook_endpoint" {
  description = "What receives GitHub's webhooks: `function_url` (a Lambda function URL, auth NONE: GitHub's HMAC signature is the authentication) or `api_gateway` (an API Gateway HTTP API with a POST /webhook route)."
  type        = string
  default     = "function_url"

  validation {
    condition     = contains(["function_url", "api_gateway"], var.webhook_endpoint)
    error_message = "webhook_endpoint must be function_url or api_gateway."
  }
}

variable "scaledown_schedule" {
  description = "EventBridge schedule expression of the scale-down pass."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate\\(.+\\)|cron\\(.+\\))$", var.scaledown_schedule))
    error_message = "scaledown_schedule must be an EventBridge rate(...) or cron(...) expression."
  }
}

variable "rebalancer_schedule" {
  description = "EventBridge schedule expression of the rebalancer pass."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate\\(.+\\)|cron\\(.+\\))$", var.rebalancer_schedule))
    error_message = "rebalancer_schedule must be an EventBridge rate(...) or cron(...) expression."
  }
}

variable "scaleup_max_concurrency" {
  description = "Most scaleup workers the jobs queue's event source mapping runs at once (bounds the load on GitHub's API); null: no limit but the function's concurrency."
  type        = number
  default     = 10

  validation {
    condition     = var.scaleup_max_concurrency == null || try(var.scaleup_max_concurrency >= 2 && var.scaleup_max_concurrency <= 1000, false)
    error_message = "scaleup_max_concurrency must be between 2 and 1000 (SQS event source mapping limits), or null."
  }
}

variable "queue_batch_size" {
  description = "Messages per invocation of scaleup and lifecycle."
  type        = number
  default     = 10

  validation {
    condition     = var.queue_batch_size >= 1 && var.queue_batch_size <= 10
    error_message = "queue_batch_size must be between 1 and 10 (no batching window is configured)."
  }
}

variable "max_receive_count" {
  description = "Receives of a message before SQS moves it to its dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "jitr_settings" {
  description = "Further jitr settings as JITR_* environment variables of every function, e.g. { JITR_MAX_RUNNERS = \"50\", JITR_ALLOWED_OWNERS = \"my-org\" } (see docs/aws-configuration.md). Variables the module sets itself cannot be given here."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.jitr_settings) : can(regex("^JITR_[A-Z0-9_]+$", k))])
    error_message = "jitr_settings keys must be JITR_* variable names."
  }
  validation {
    condition = length(setintersection(keys(var.jitr_settings), [
      "JITR_PROVIDER", "JITR_POOLS", "JITR_GITHUB_APP_ID", "JITR_GITHUB_API_URL", "JITR_SECRETS_WEBHOOK_SECRET",
      "JITR_SECRETS_GITHUB_APP_PRIVATE_KEY", "JITR_LOG_LEVEL", "JITR_AWS_TABLE", "JITR_AWS_JOBS_QUEUE_URL",
      "JITR_AWS_LIFECYCLE_QUEUE_URL", "JITR_AWS_JOBS_DLQ_URL", "JITR_AWS_LIFECYCLE_DLQ_URL",
      "JITR_AWS_SECURITY_GROUP_IDS", "JITR_AWS_INSTANCE_PROFILE", "JITR_AWS_TAGS", "JITR_AWS_ASSOCIATE_PUBLIC_IP",
      "JITR_AWS_METRICS_NAMESPACE",
    ])) == 0
    error_message = "jitr_settings must not set a variable the module sets (the provider, pools, GitHub App, secrets, table, queues, security groups, instance profile, tags, log level, metrics namespace): use the module's own variables."
  }
}

# -- the GitHub App ----------------------------------------------------------------------------------

variable "github_app_id" {
  description = "The GitHub App's id (a number; see docs/github-app-setup.md)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{1,20}$", var.github_app_id))
    error_message = "github_app_id must be the App's numeric id."
  }
}

variable "github_api_url" {
  description = "GitHub's REST API: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https?://[^\\s]+$", var.github_api_url))
    error_message = "github_api_url must be an http(s) URL."
  }
}

variable "webhook_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the App's webhook secret (text). Set this or webhook_secret."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.webhook_secret_arn))
    error_message = "webhook_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "webhook_secret" {
  description = "The App's webhook secret, to store in a secret this module creates. Set this or webhook_secret_arn. It ends up in the Terraform state: protect the state, or create the secret elsewhere and pass its ARN."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.webhook_secret == null || try(length(var.webhook_secret) >= 16, false)
    error_message = "webhook_secret must be at least 16 characters (`jitr github-app create` makes one of 64 hex digits)."
  }
}

variable "github_app_private_key_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the App's private key (PEM text). Set this or github_app_private_key."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_private_key_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.github_app_private_key_secret_arn))
    error_message = "github_app_private_key_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "github_app_private_key" {
  description = "The App's private key (PEM), to store in a secret this module creates. Set this or github_app_private_key_secret_arn. It ends up in the Terraform state."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.github_app_private_key == null || try(strcontains(var.github_app_private_key, "PRIVATE KEY-----"), false)
    error_message = "github_app_private_key must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)."
  }
}

variable "secret_recovery_window_days" {
  description = "Recovery window of the secrets this module creates, when they are destroyed (0: delete at once)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

variable "kms_key_arn" {
  description = "A customer-managed KMS key for the secrets, queues, table and log groups this module creates, and the functions' environment (null: AWS-managed keys). Its key policy must let CloudWatch Logs use it; the roles get kms:Decrypt and kms:GenerateDataKey on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

# -- runners ---------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "The VPC of the runners' subnets: the runner security group is created there."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "pools" {
  description = <<-EOT
    The runner pools, rendered into JITR_POOLS. Each: name, labels (must include "self-hosted"),
    machine_types (EC2 instance types, tried in order), subnet_ids (the pool's placements, tried in
    order), image (an AMI id, or resolve:ssm:<parameter>); optional disk_gb, max_runners, spot,
    on_demand_fallback, runner_group, org_scope, priority, allow_public, arch (x64/arm64),
    max_lifetime_s, rerun_on_interruption (ask GitHub to re-run, once per attempt and
    on-demand, a job it failed because its spot VM was reclaimed: needs spot_interruptions and
    the App's Actions write permission; docs/embedded-serve.md, "Spot interruptions"); and
    launch settings that replace the deployment's for this pool:
    launch_template, security_group_ids, instance_profile, key_name, associate_public_ip,
    root_device_name, log_shipping; machine_type_labels and machine_sizes let a job pick its
    instance type by label (docs/embedded-serve.md, "Sizing from labels"); handoff ("broker", the
    default: the VMs pull their JIT config from the broker function with their instance identity,
    so their user data holds no secret; or "metadata": the JIT config is in the user data, for
    runners that cannot reach the broker's HTTP API; the broker and its URL are created unless
    every pool says "metadata"; docs/embedded-serve.md, "The JIT config handoff"); warm,
    warm_windows and warm_max_idle_s keep booted VMs waiting at the broker for jobs (not with
    handoff = "metadata"; docs/warm-pools.md). See docs/aws-configuration.md.
  EOT
  type = list(object({
    name                  = string
    labels                = list(string)
    machine_types         = list(string)
    subnet_ids            = list(string)
    image                 = string
    disk_gb               = optional(number)
    max_runners           = optional(number)
    spot                  = optional(bool)
    on_demand_fallback    = optional(bool)
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
    launch_template     = optional(string)
    security_group_ids  = optional(list(string))
    instance_profile    = optional(string)
    key_name            = optional(string)
    associate_public_ip = optional(bool)
    root_device_name    = optional(string)
    log_shipping        = optional(bool)
    handoff             = optional(string)
    warm                = optional(number)
    warm_max_idle_s     = optional(number)
    warm_windows = optional(list(object({
      days       = list(string)
      start_hour = number
      end_hour   = number
      count      = number
    })))
  }))

  validation {
    condition     = length(var.pools) > 0
    error_message = "pools must have at least one pool."
  }
  validation {
    condition     = alltrue([for p in var.pools : contains(["broker", "metadata"], coalesce(p.handoff, "broker"))])
    error_message = "a pool's handoff is \"broker\" (the default) or \"metadata\"."
  }
  validation {
    condition = alltrue([
      for p in var.pools : coalesce(p.handoff, "broker") == "broker"
      || (coalesce(p.warm, 0) == 0 && alltrue([for w in coalesce(p.warm_windows, []) : w.count == 0]))
    ])
    error_message = "a pool with warm VMs (warm or warm_windows) needs the broker handoff (leave handoff unset, or \"broker\"): warm VMs wait at the broker for their JIT config; handoff = \"metadata\" has no warm VMs."
  }
  validation {
    condition     = length(distinct([for p in var.pools : p.name])) == length(var.pools)
    error_message = "pool names must be unique."
  }
  validation {
    condition     = alltrue([for p in var.pools : can(regex("^[a-z0-9][a-z0-9-]{0,31}$", p.name))])
    error_message = "a pool name is 1-32 characters: lower-case letters, digits and hyphens, not starting with a hyphen."
  }
  validation {
    condition     = alltrue([for p in var.pools : contains([for l in p.labels : lower(l)], "self-hosted")])
    error_message = "every pool's labels must include \"self-hosted\"."
  }
  validation {
    condition     = alltrue(flatten([for p in var.pools : [for l in p.labels : can(regex("^[A-Za-z0-9][A-Za-z0-9._:+/-]{0,99}$", l))]]))
    error_message = "labels are 1-100 characters: letters, digits and ._:+/- (not starting with a symbol)."
  }
  validation {
    condition     = alltrue([for p in var.pools : length(p.machine_types) > 0 && alltrue([for t in p.machine_types : can(regex("^[a-z0-9-]+\\.[a-z0-9]+$", t))])])
    error_message = "every pool needs at least one machine type, each an EC2 instance type such as m7i.large."
  }
  validation {
    condition     = alltrue([for p in var.pools : length(p.subnet_ids) > 0 && alltrue([for s in p.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])])
    error_message = "every pool needs at least one subnet id (subnet-...)."
  }
  validation {
    condition     = alltrue([for p in var.pools : can(regex("^(ami-[0-9a-f]+|resolve:ssm:[A-Za-z0-9._/-]+)$", p.image))])
    error_message = "a pool's image must be an AMI id (ami-...) or resolve:ssm:<parameter>."
  }
  validation {
    condition     = alltrue([for p in var.pools : (p.disk_gb == null || try(p.disk_gb >= 8, false)) && (p.max_runners == null || try(p.max_runners >= 0, false)) && (p.max_lifetime_s == null || try(p.max_lifetime_s >= 300, false))])
    error_message = "disk_gb must be at least 8, max_runners at least 0 and max_lifetime_s at least 300."
  }
  validation {
    condition     = alltrue([for p in var.pools : p.arch == null || contains(["x64", "arm64"], coalesce(p.arch, "x64"))])
    error_message = "a pool's arch must be x64 or arm64."
  }
  validation {
    condition     = alltrue(flatten([for p in var.pools : [for g in coalesce(p.security_group_ids, []) : can(regex("^sg-[0-9a-f]{8,17}$", g))]]))
    error_message = "a pool's security_group_ids must be security group ids (sg-...)."
  }
}

variable "runner_security_group_ids" {
  description = "Security groups for runner VMs in addition to the one this module creates (egress 443/80/53 only)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.runner_security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", g))])
    error_message = "runner_security_group_ids must be security group ids (sg-...)."
  }
}

variable "runner_egress_cidr_blocks" {
  description = "Where runner VMs may connect on 443, 80 and 53 (IPv4)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "runner_associate_public_ip" {
  description = "Give runner VMs a public IPv4 address (for subnets without a NAT gateway)."
  type        = bool
  default     = false
}

variable "runner_tags" {
  description = "Extra tags on runner VMs and their volumes (JITR_AWS_TAGS). Keys aws:*, jitr-*, jitr:deployment, managed-by and Name are reserved; values cannot contain commas."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.runner_tags : can(regex("^[\\w .:/=+@-]{1,128}$", k)) && !startswith(k, "aws:") && !startswith(k, "jitr-") && !contains(["managed-by", "Name", "jitr:deployment"], k) && length(v) <= 256 && !strcontains(v, ",") && !strcontains(k, "=")])
    error_message = "runner_tags keys must be 1-128 characters and not reserved (aws:*, jitr-*, jitr:deployment, managed-by, Name); values at most 256 characters without commas."
  }

  validation {
    condition     = length(var.runner_tags) <= 42
    error_message = "runner_tags holds at most 42 tags: EC2 takes 50 on a VM, and jitr writes 8 of its own (jitr:deployment among them)."
  }
}

variable "runner_log_shipping" {
  description = "Let runner VMs ship their startup and runner logs to CloudWatch Logs (log groups /jitr/<pool>): the runner role may create and write those groups. Images without the CloudWatch agent ship nothing either way."
  type        = bool
  default     = true
}

variable "runner_log_retention_days" {
  description = "Retention of the runners' log groups /jitr/<pool>, which this module creates for each pool when runner_log_shipping is on."
  type        = number
  default     = 14
}

variable "runner_self_terminate" {
  description = "Let a runner VM call ec2:TerminateInstances on its own instance (and no other) at the end of its job. Off by default: the VM's shutdown terminates it anyway, and any job on the VM could use the permission."
  type        = bool
  default     = false
}

variable "runner_role_policy_arns" {
  description = "Managed policies to attach to the runner role: permissions every job on every runner gets. None by default."
  type        = list(string)
  default     = []
}

variable "additional_passable_role_arns" {
  description = "Roles (of pools' own instance_profile) the functions that launch VMs may pass to EC2, besides the runner role this module creates: scaleup, and scaledown where a pool keeps warm VMs."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "A permissions boundary for every IAM role this module creates (null: none)."
  type        = string
  default     = null
}

# -- spot interruptions ---------------------------------------------------------------------------

variable "spot_interruptions" {
  description = "Route EC2 Spot Instance Interruption Warnings to the lifecycle queue (an EventBridge rule and a queue policy), so jitr marks interrupted runners and re-runs their jobs where a pool sets rerun_on_interruption. With kms_key_arn, the key's policy must also let events.amazonaws.com use it (kms:GenerateDataKey, kms:Decrypt)."
  type        = bool
  default     = true
}

variable "rebalance_recommendations" {
  description = "Route EC2 Instance Rebalance Recommendations too: jitr notes them on the job's timeline only."
  type        = bool
  default     = false
}

# -- alarms ----------------------------------------------------------------------------------------

variable "create_alarms" {
  description = "Create CloudWatch alarms on the dead-letter queues' depth and on each function's errors."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "ARNs (e.g. SNS topics) notified when an alarm fires and when it clears."
  type        = list(string)
  default     = []
}

variable "function_error_threshold" {
  description = "Errors of one function within 5 minutes that fire its alarm."
  type        = number
  default     = 1
}

variable "no_job_exit_threshold" {
  description = "Runners exiting without a job within 15 minutes that fire the no-job-exits alarm (the runner_no_job_exits metric)."
  type        = number
  default     = 2
}

# -- metrics ---------------------------------------------------------------------------------------

variable "create_dashboard" {
  description = "Create a CloudWatch dashboard (named name_prefix) of jitr's metrics (docs/metrics.md)."
  type        = bool
  default     = true
}
