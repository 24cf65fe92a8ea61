terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "jitr" {
  source = "../../infra/gcp/terraform"

  project_id      = var.project_id
  project_number  = var.project_number
  region          = var.region
  zones           = var.zones
  function_source = var.function_source

  github_app_id                    = var.github_app_id
  webhook_secret_id                = var.webhook_secret_id
  github_app_private_key_secret_id = var.github_app_private_key_secret_id
  allowed_owners                   = var.allowed_owners

  pools      = var.pools
  network    = var.network
  subnetwork = var.subnetwork

  min_instances = var.min_instances
  labels        = var.labels
}
