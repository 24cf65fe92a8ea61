build {
  sources = ["source.amazon-ebs.al2023", "source.googlecompute.ubuntu"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/jitr-image"]
  }

  provisioner "file" {
    source      = "${path.root}/scripts/"
    destination = "/tmp/jitr-image"
  }

  provisioner "file" {
    source      = "${path.root}/runner-checksums.txt"
    destination = "/tmp/jitr-image/runner-checksums.txt"
  }

  provisioner "shell" {
    only             = ["amazon-ebs.al2023"]
    execute_command  = "chmod +x {{ .Path }}; sudo -E bash {{ .Path }}"
    environment_vars = ["JITR_CLOUD=aws", "JITR_RUNNER_VERSION=${var.runner_version}", "JITR_RUNNER_ARCH=${var.arch}"]
    inline           = ["bash /tmp/jitr-image/provision.sh"]
  }

  provisioner "shell" {
    only             = ["googlecompute.ubuntu"]
    execute_command  = "chmod +x {{ .Path }}; sudo -E bash {{ .Path }}"
    environment_vars = ["JITR_CLOUD=gcp", "JITR_RUNNER_VERSION=${var.runner_version}", "JITR_RUNNER_ARCH=${var.arch}"]
    inline           = ["bash /tmp/jitr-image/provision.sh"]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
