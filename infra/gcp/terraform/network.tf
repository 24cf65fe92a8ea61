# Firewall rules for the runner VMs, on every network they use (networks.tf). They run as the
# runner service account (jitr sets no network tags, so the rules target that account): egress to
# HTTPS, HTTP and DNS, nothing else out, nothing in. The metadata server (169.254.169.254) is always reachable. Runners get no external IP unless
# external_ip is set: the subnetwork needs Cloud NAT to reach GitHub.

resource "google_compute_firewall" "runner_egress" {
  for_each = local.firewall_networks

  project                 = var.project_id
  name                    = "${local.prefix}-runner-allow-egress-${each.value}"
  description             = "jitr runners: HTTPS, HTTP and DNS out."
  network                 = each.key
  direction               = "EGRESS"
  priority                = 1000
  destination_ranges      = var.runner_egress_ranges
  target_service_accounts = [google_service_account.this["runner"].email]

  allow {
    protocol = "tcp"
    ports    = ["443", "80", "53"]
  }
  allow {
    protocol = "udp"
    ports    = ["53"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }

  depends_on = [google_project_service.this]
}

resource "google_compute_firewall" "runner_deny_egress" {
  for_each = local.firewall_networks

  project                 = var.project_id
  name                    = "${local.prefix}-runner-deny-egress-${each.value}"
  description             = "jitr runners: no other egress."
  network                 = each.key
  direction               = "EGRESS"
  priority                = 65000
  destination_ranges      = ["0.0.0.0/0"]
  target_service_accounts = [google_service_account.this["runner"].email]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }

  depends_on = [google_project_service.this]
}

resource "google_compute_firewall" "runner_deny_ingress" {
  for_each = local.firewall_networks

  project                 = var.project_id
  name                    = "${local.prefix}-runner-deny-ingress-${each.value}"
  description             = "jitr runners: no ingress (they only connect out to GitHub)."
  network                 = each.key
  direction               = "INGRESS"
  priority                = 1000
  source_ranges           = ["0.0.0.0/0"]
  target_service_accounts = [google_service_account.this["runner"].email]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }

  depends_on = [google_project_service.this]
}
