# What each function's service account may do (docs/gcp-configuration.md, IAM); iam.tf turns
# these lists into custom roles and bindings. Variables and locals only, like settings.tf:
# infra/tests/gcp evaluates them with `terraform console`, records every Google API call each
# function makes in an end-to-end run, and checks the two against each other (every call granted,
# every grant used or given a reason in infra/tests/gcp/gcp_permissions.json).

locals {
  # Pools that keep warm VMs (jitr's Pool.keeps_warm: warm, or a window's count, above 0). JITR_POOLS
  # comes from var.pools alone (extra_settings may not set it), so this is known at plan time:
  # scaledown gets the launch permissions, and the broker those on warm records, only where used.
  warm_pools = anytrue([
    for pool in var.pools : coalesce(pool.warm, 0) > 0 || anytrue([for w in coalesce(pool.warm_windows, []) : w.count > 0])
  ])

  # What launching a runner VM takes: scaleup's, and scaledown's where it fills warm pools.
  launch_permissions = [
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
  # The functions that launch, and so attach the runner account to VMs (actAs on it, iam.tf).
  launchers = concat(["scaleup"], local.warm_pools ? ["scaledown"] : [])

  # Compute Engine permissions, through one custom role per function.
  compute_permissions = {
    webhook = []
    # scaleup also deletes the VM of a job cancelled while it launched (it retires that runner)
    scaleup   = concat(local.launch_permissions, ["compute.instances.delete"])
    lifecycle = ["compute.instances.delete"] # a surplus runner's VM
    scaledown = concat([
      "compute.instances.delete",
      "compute.instances.getGuestAttributes", # a stopped runner VM's exit report (did it run a job?)
      "compute.instances.list",
    ], local.warm_pools ? local.launch_permissions : [])
    rebalancer = []
    broker     = ["compute.instances.delete"] # the VM of a runner whose repository GitHub will not serve
  }
  # Added to the launchers' roles when runner VMs get an external IP.
  external_ip_permissions = ["compute.subnetworks.useExternalIp"]

  # Firestore documents of the jitr collection. The webhook touches none (a routed delivery is one
  # publish; a duplicate is harmless at scaleup's claim); the others read, query and write records
  # with conditional updates and deletes. The broker reads a runner record and hands its config
  # over once; retiring a runner GitHub will not serve, it queries for the job waiting for the freed
  # cap; with warm pools it deletes a warm VM's record once the VM's runner has its config.
  firestore_permissions = {
    webhook    = []
    scaleup    = ["datastore.entities.create", "datastore.entities.delete", "datastore.entities.get", "datastore.entities.list", "datastore.entities.update"]
    lifecycle  = ["datastore.entities.create", "datastore.entities.delete", "datastore.entities.get", "datastore.entities.list", "datastore.entities.update"]
    scaledown  = ["datastore.entities.create", "datastore.entities.delete", "datastore.entities.get", "datastore.entities.list", "datastore.entities.update"]
    rebalancer = ["datastore.entities.create", "datastore.entities.delete", "datastore.entities.get", "datastore.entities.list", "datastore.entities.update"]
    broker     = concat(["datastore.entities.get", "datastore.entities.list", "datastore.entities.update"], local.warm_pools ? ["datastore.entities.delete"] : [])
  }

  # Topics each function publishes to (roles/pubsub.publisher on the topic: pubsub.topics.publish).
  publishes = {
    webhook    = ["jobs", "lifecycle"]
    scaleup    = ["jobs", "jobs-dead-letter"]                   # delayed retries; poison messages
    lifecycle  = ["jobs", "lifecycle", "lifecycle-dead-letter"] # the next waiting job; delayed retries; poison messages
    scaledown  = ["jobs", "lifecycle", "jobs-dead-letter"]      # stuck jobs; a lost webhook's event; a job whose runners keep exiting without it
    rebalancer = ["jobs"]                                       # jobs without a runner
    broker     = ["jobs", "jobs-dead-letter"]                   # the next waiting job; a job GitHub will not serve
  }

  # Secrets each function reads (roles/secretmanager.secretAccessor on the secret).
  reads_secrets = {
    webhook    = ["webhook_secret"]
    scaleup    = ["github_app_private_key"]
    lifecycle  = ["github_app_private_key"]
    scaledown  = ["github_app_private_key"]
    rebalancer = ["github_app_private_key"]
    broker     = local.broker_enabled ? ["github_app_private_key"] : [] # mints the JIT config (deployed unless every pool says handoff = "metadata")
  }

  custom_roles = {
    for name, _ in local.functions : name => distinct(concat(
      local.compute_permissions[name],
      contains(local.launchers, name) && var.external_ip ? local.external_ip_permissions : [],
      local.firestore_permissions[name],
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
