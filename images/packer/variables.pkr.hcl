variable "arch" {
  type        = string
  default     = "x64"
  description = "Runner architecture, as in a jitr pool: x64 (x86_64) or arm64 (Graviton, Axion/Ampere)."

  validation {
    condition     = contains(["x64", "arm64"], var.arch)
    error_message = "The arch must be x64 or arm64."
  }
}

variable "runner_version" {
  type        = string
  default     = "2.336.0"
  description = "GitHub Actions runner version baked into the image; it needs a line in runner-checksums.txt."

  validation {
    condition     = var.runner_version != "" && regex_replace(var.runner_version, "^[0-9]+\\.[0-9]+\\.[0-9]+$", "") == ""
    error_message = "The runner_version must look like 2.336.0."
  }
}

variable "image_name" {
  type        = string
  default     = "jitr-runner"
  description = "Prefix of the AMI / GCE image name; the OS, architecture and a timestamp are appended."

  validation {
    condition     = var.image_name != "" && regex_replace(var.image_name, "^[a-z][a-z0-9-]{0,40}$", "") == ""
    error_message = "The image_name must be lower-case letters, digits and dashes, starting with a letter, at most 41 characters."
  }
}

variable "image_family" {
  type        = string
  default     = "jitr-runner"
  description = "GCE image family prefix (the architecture is appended); pools name the family to get the newest image."

  validation {
    condition     = var.image_family != "" && regex_replace(var.image_family, "^[a-z][a-z0-9-]{0,50}$", "") == ""
    error_message = "The image_family must be lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "public" {
  type        = bool
  default     = true
  description = "Give the build VM a public IP. Set false in a subnet that reaches the internet through NAT (Packer then connects over the private IP)."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Extra tags on the AMI, its snapshots and the build instance; labels on the GCE image and build VM (GCE keys and values: lower-case letters, digits, - and _)."
}

variable "aws_region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region the AMI is built in (copy it to other regions with ami_regions)."

  validation {
    condition     = var.aws_region != "" && regex_replace(var.aws_region, "^[a-z]{2}(-[a-z]+)+-[0-9]+$", "") == ""
    error_message = "The aws_region must be a region name such as eu-west-1."
  }
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Other AWS regions to copy the finished AMI to."
}

variable "ami_users" {
  type        = list(string)
  default     = []
  description = "AWS account ids allowed to launch the AMI (it stays private to them and the owner)."
}

variable "aws_subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance; empty uses the default VPC."

  validation {
    condition     = var.aws_subnet_id == "" || regex_replace(var.aws_subnet_id, "^subnet-[0-9a-f]{8,17}$", "") == ""
    error_message = "The aws_subnet_id must be empty or a subnet id (subnet-...)."
  }
}

variable "aws_instance_type" {
  type        = string
  default     = ""
  description = "Instance type of the build instance; empty picks t3.large (x64) or t4g.large (arm64)."
}

variable "gcp_project_id" {
  type        = string
  default     = "my-project"
  description = "GCP project the image is built and stored in."

  validation {
    condition     = var.gcp_project_id != "" && regex_replace(var.gcp_project_id, "^[a-z][a-z0-9-]{4,28}[a-z0-9]$", "") == ""
    error_message = "The gcp_project_id must be a project id (6 to 30 lower-case letters, digits and dashes)."
  }
}

variable "gcp_zone" {
  type        = string
  default     = "europe-west4-a"
  description = "Zone of the build VM (pick one with the machine type, e.g. t2a for arm64)."

  validation {
    condition     = var.gcp_zone != "" && regex_replace(var.gcp_zone, "^[a-z]+-[a-z]+[0-9]+-[a-z]$", "") == ""
    error_message = "The gcp_zone must be a zone name such as europe-west4-a."
  }
}

variable "gcp_subnetwork" {
  type        = string
  default     = ""
  description = "Subnetwork of the build VM; empty uses the default network."
}

variable "gcp_machine_type" {
  type        = string
  default     = ""
  description = "Machine type of the build VM; empty picks e2-standard-2 (x64) or t2a-standard-2 (arm64)."
}

variable "gcp_storage_locations" {
  type        = list(string)
  default     = []
  description = "Where GCE stores the image (e.g. [\"eu\"]); empty is the multi-region nearest the build zone."
}
