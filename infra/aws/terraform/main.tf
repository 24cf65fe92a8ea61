data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  # Each pool's JIT config handoff: "broker" unless the pool says "metadata" (runners that cannot
  # reach the broker's HTTP API, such as private subnets without a route to it).
  handoff = { for p in var.pools : p.name => coalesce(p.handoff, "broker") }
  # The five functions, and the broker unless every pool says handoff = "metadata": one zip, each
  # with its handler and the defaults of docs/aws-deploy.md.
  broker_enabled = anytrue([for p in var.pools : local.handoff[p.name] == "broker"])
  function_defaults = merge({
    webhook    = { timeout_s = 10, memory_mb = 256 }
    scaleup    = { timeout_s = 60, memory_mb = 512 }
    lifecycle  = { timeout_s = 60, memory_mb = 256 }
    scaledown  = { timeout_s = 240, memory_mb = 512 }
    rebalancer = { timeout_s = 55, memory_mb = 512 }
  }, local.broker_enabled ? { broker = { timeout_s = 30, memory_mb = 512 } } : {})
  functions = {
    for kind, defaults in local.function_defaults : kind => {
      name                 = "${var.name_prefix}-${kind}"
      handler              = "jitr_functions.aws.${kind}"
      timeout_s            = coalesce(try(var.function_settings[kind].timeout_s, null), defaults.timeout_s)
      memory_mb            = coalesce(try(var.function_settings[kind].memory_mb, null), defaults.memory_mb)
      reserved_concurrency = try(coalesce(var.function_settings[kind].reserved_concurrency, -1), -1)
    }
  }

  # Runner VMs carry this tag besides jitr's own (managed-by=jitr): the EC2 permissions of a
  # deployment's functions are scoped to its own VMs.
  deployment_tag_key = "jitr:deployment"
  runner_tags        = merge(var.runner_tags, { (local.deployment_tag_key) = var.name_prefix })

  # JITR_POOLS: each pool as jitr's settings loader reads it, optional fields left out when unset;
  # the handoff always written out, resolved here, so the functions never depend on jitr's default.
  pools = [
    for p in var.pools : merge(
      { name = p.name, labels = p.labels, machine_types = p.machine_types, placements = p.subnet_ids, image = p.image },
      { for k, v in {
        disk_gb = p.disk_gb, max_runners = p.max_runners, priority = p.priority, max_lifetime_s = p.max_lifetime_s
      } : k => v if v != null },
      { for k, v in { warm = p.warm, warm_max_idle_s = p.warm_max_idle_s } : k => v if v != null },
      p.warm_windows == null ? {} : { warm_windows = p.warm_windows },
      { for k, v in {
        spot = p.spot, on_demand_fallback = p.on_demand_fallback, org_scope = p.org_scope, allow_public = p.allow_public
      } : k => v if v != null },
      p.rerun_on_interruption == null ? {} : { rerun_on_interruption = p.rerun_on_interruption },
      { for k, v in { runner_group = p.runner_group, arch = p.arch } : k => v if v != null },
      { handoff = local.handoff[p.name] },
      p.machine_type_labels == null ? {} : { machine_type_labels = p.machine_type_labels },
      p.machine_sizes == null ? {} : { machine_sizes = p.machine_sizes },
      length(local.pool_options[p.name]) == 0 ? {} : { options = local.pool_options[p.name] },
    )
  ]
  pool_options = {
    for p in var.pools : p.name => merge(
      { for k, v in {
        launch_template  = p.launch_template, instance_profile = p.instance_profile, key_name = p.key_name,
        root_device_name = p.root_device_name
      } : k => v if v != null },
      { for k, v in { associate_public_ip = p.associate_public_ip, log_shipping = p.log_shipping } : k => v if v != null },
      p.security_group_ids == null ? {} : { security_group_ids = p.security_group_ids },
    )
  }

  runner_security_group_ids = concat([aws_security_group.runners.id], var.runner_security_group_ids)

  environment = merge(var.jitr_settings, {
    JITR_PROVIDER                       = "aws"
    JITR_LOG_LEVEL                      = var.log_level
    JITR_GITHUB_APP_ID                  = var.github_app_id
    JITR_GITHUB_API_URL                 = var.github_api_url
    JITR_SECRETS_WEBHOOK_SECRET         = local.webhook_secret_arn
    JITR_SECRETS_GITHUB_APP_PRIVATE_KEY = local.app_key_secret_arn
    JITR_POOLS                          = jsonencode(local.pools)
    JITR_AWS_TABLE                      = aws_dynamodb_table.state.name
    JITR_AWS_JOBS_QUEUE_URL             = aws_sqs_queue.main["jobs"].url
    JITR_AWS_LIFECYCLE_QUEUE_URL        = aws_sqs_queue.main["lifecycle"].url
    JITR_AWS_JOBS_DLQ_URL               = aws_sqs_queue.dead_letter["jobs"].url
    JITR_AWS_LIFECYCLE_DLQ_URL          = aws_sqs_queue.dead_letter["lifecycle"].url
    JITR_AWS_SECURITY_GROUP_IDS         = join(",", local.runner_security_group_ids)
    JITR_AWS_INSTANCE_PROFILE           = aws_iam_instance_profile.runner.name
    JITR_AWS_ASSOCIATE_PUBLIC_IP        = var.runner_associate_public_ip ? "true" : "false"
    JITR_AWS_TAGS                       = join(",", [for k in sort(keys(local.runner_tags)) : "${k}=${local.runner_tags[k]}"])
    JITR_AWS_METRICS_NAMESPACE          = local.metrics_namespace
  }, local.broker_enabled ? { JITR_BROKER_URL = local.broker_url } : {})
}
