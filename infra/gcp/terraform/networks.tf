# The VPC networks runner VMs land on: the module's `network` and each pool's own `options.network`,
# as full paths; the firewall rules (network.tf) are made on each, named with a short stable suffix.

locals {
  runner_network_names = concat([var.network], [
    for pool in var.pools : pool.options.network if try(pool.options.network, null) != null
  ])
  runner_networks = toset([
    for name in local.runner_network_names :
    startswith(name, "projects/") || startswith(name, "global/") ? name : "projects/${var.project_id}/global/networks/${name}"
  ])
  firewall_networks = var.manage_firewall ? { for path in local.runner_networks : path => substr(sha1(path), 0, 6) } : {}
}
