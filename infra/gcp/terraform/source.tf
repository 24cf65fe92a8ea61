# The function source: the directory `jitr bundle gcp` wrote (zipped here) or a zip of it, in a
# bucket of its own. The object is named after its content hash, so a new bundle redeploys.

locals {
  source_is_zip = endswith(lower(var.function_source), ".zip")
  source_zip    = local.source_is_zip ? var.function_source : data.archive_file.source[0].output_path
  source_md5    = local.source_is_zip ? filemd5(var.function_source) : data.archive_file.source[0].output_md5
}

data "archive_file" "source" {
  count = local.source_is_zip ? 0 : 1

  type        = "zip"
  source_dir  = var.function_source
  output_path = "${path.root}/.terraform/tmp/${local.prefix}-functions-source.zip"
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:The bucket holds only the function source zips Cloud Build reads; Cloud Audit Logs record access.
  #checkov:skip=CKV_GCP_78:Each source object is named after its content hash and replaced, never overwritten, by Terraform; versioning adds nothing.
  project                     = var.project_id
  name                        = "${var.project_id}-${local.prefix}-functions-source"
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  depends_on = [google_project_service.this]
}

resource "google_storage_bucket_object" "source" {
  name   = "functions-${local.source_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = local.source_zip
}
