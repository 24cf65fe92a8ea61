variable "project_id" {
  description = "Project to deploy jitr into."
  type        = string
}

variable "project_number" {
  description = "The project's number (gcloud projects describe PROJECT_ID --format='value(projectNumber)'): the broker's URL is built from it. Required unless every pool says handoff = \"metadata\"."
  type        = string
  default     = null
}

variable "region" {
  description = "Region of the functions."
  type        = string
  default     = "us-central1"
}

variable "zones" {
  description = "Default zone of pools without zones of their own."
  type        = list(string)
  default     = ["us-central1-a"]
}

variable "function_source" {
  description = "Directory written by `jitr bundle gcp --out DIR` (or a zip of it)."
  type        = string
  default     = "../../build/gcp"
}

variable "github_app_id" {
  description = "The GitHub App's id."
  type        = string
}

variable "webhook_secret_id" {
  description = "Secret Manager secret holding the App's webhook secret (written by `jitr github-app create`)."
  type        = string
  default     = "jitr-webhook-secret"
}

variable "github_app_private_key_secret_id" {
  description = "Secret Manager secret holding the App's private key."
  type        = string
  default     = "jitr-github-app-key"
}

variable "allowed_owners" {
  description = "Organisations or users whose jobs are served."
  type        = list(string)
}

variable "pools" {
  description = "Runner pools; see the module's `pools` variable."
  type        = any
}

variable "network" {
  description = "VPC network of the runner VMs."
  type        = string
  default     = "default"
}

variable "subnetwork" {
  description = "Subnetwork of the runner VMs (needs Cloud NAT: runners have no external IP)."
  type        = string
  default     = null
}

variable "min_instances" {
  description = "Minimum instances per function."
  type        = map(number)
  default     = { webhook = 1, scaleup = 1 }
}

variable "labels" {
  description = "Labels on every resource."
  type        = map(string)
  default     = {}
}
