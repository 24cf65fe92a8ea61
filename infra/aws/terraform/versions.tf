terraform {
  # Terraform 1.5 or later, or OpenTofu (which reports 1.6 and later).
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}
