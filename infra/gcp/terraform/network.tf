# Firewall rules for the runner VMs, which run as the runner service account (jitr sets no network
# tags, so the rules target that account): egress to HTTPS, HTTP and DNS, nothing else out, nothing
# in. The metadata server (169.254.169.254) is always reachable. Runners get no external IP unless
# external_ip is set: the subnetwork needs Cloud NAT to reach GitHub.

locals {
  runner_network = startswith(var.network, "projects/") || startswith(var.network, "global/") ? var.network : "projects/${var.project_id}/global/networks/${var.network}"
}

resource "google_compute_firewall" "runner_egress" {
  count = var.manage_firewall ? 1 : 0

  project                 = var.project_id
  name                    = "${local.prefix}-runner-allow-egress"
  description             = "jitr runners: HTTPS, HTTP and DNS out."
  network                 = local.runner_network
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
  count = var.manage_firewall ? 1 : 0

  project                 = var.project_id
  name                    = "${local.prefix}-runner-deny-egress"
  description             = "jitr runners: no other egress."
  network                 = local.runner_network
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
  count = var.manage_firewall ? 1 : 0

  project                 = var.project_id
  name                    = "${local.prefix}-runner-deny-ingress"
  description             = "jitr runners: no ingress (they only connect out to GitHub)."
  network                 = local.runner_network
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
