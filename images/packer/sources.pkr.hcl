locals {
  timestamp   = formatdate("YYYYMMDDhhmmss", timestamp())
  aws_arch    = var.arch == "arm64" ? "arm64" : "x86_64"
  gcp_arch    = var.arch == "arm64" ? "arm64" : "amd64"
  common_tags = merge({ "managed-by" = "jitr", "jitr-runner-version" = var.runner_version }, var.tags)
  gcp_labels  = { for k, v in local.common_tags : lower(regex_replace(k, "[^a-zA-Z0-9_-]", "_")) => lower(regex_replace(v, "[^a-zA-Z0-9_-]", "_")) }
}

source "amazon-ebs" "al2023" {
  region                      = var.aws_region
  instance_type               = var.aws_instance_type != "" ? var.aws_instance_type : (var.arch == "arm64" ? "t4g.large" : "t3.large")
  subnet_id                   = var.aws_subnet_id
  associate_public_ip_address = var.public
  ssh_interface               = var.public ? "public_ip" : "private_ip"
  ssh_username                = "ec2-user"
  ami_name                    = "${var.image_name}-al2023-${var.arch}-${local.timestamp}"
  ami_description             = "jitr runner image: Amazon Linux 2023 ${var.arch}, GitHub Actions runner ${var.runner_version}"
  ami_regions                 = var.ami_regions
  ami_users                   = var.ami_users
  tags                        = merge(local.common_tags, { "Name" = "${var.image_name}-al2023-${var.arch}" })
  snapshot_tags               = local.common_tags
  run_tags                    = local.common_tags

  source_ami_filter {
    filters = {
      name                = "al2023-ami-2023.*-kernel-6.*-${local.aws_arch}"
      architecture        = local.aws_arch
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 30
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
}

source "googlecompute" "ubuntu" {
  project_id              = var.gcp_project_id
  zone                    = var.gcp_zone
  subnetwork              = var.gcp_subnetwork
  machine_type            = var.gcp_machine_type != "" ? var.gcp_machine_type : (var.arch == "arm64" ? "t2a-standard-2" : "e2-standard-2")
  source_image_family     = "ubuntu-2404-lts-${local.gcp_arch}"
  source_image_project_id = ["ubuntu-os-cloud"]
  omit_external_ip        = ! var.public
  use_internal_ip         = ! var.public
  ssh_username            = "packer"
  disk_size               = 30
  disk_type               = "pd-balanced"
  image_name              = "${var.image_name}-ubuntu-2404-${var.arch}-${local.timestamp}"
  image_family            = "${var.image_family}-${var.arch}"
  image_description       = "jitr runner image: Ubuntu 24.04 LTS ${var.arch}, GitHub Actions runner ${var.runner_version}"
  image_labels            = local.gcp_labels
  labels                  = local.gcp_labels
  image_storage_locations = var.gcp_storage_locations
}
