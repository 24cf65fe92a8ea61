# Plugin requirements, for Packer 1.7 and later (`packer init .` installs them).
# Packer 1.6, which bundles both builders, does not know this block: the offline check
# (images/tests/test_packer.py) validates the other files without it.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
    googlecompute = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/googlecompute"
    }
  }
}
