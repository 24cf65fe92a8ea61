# The state store: a Firestore database in Native mode, the composite indexes jitr's queries need
# and the TTL policy. Indexes and field settings come from jitr-gcp's own index file, so the module
# and the code cannot disagree: by default the file of the repository this module is part of
# (the module is used from a checkout or a git source, which brings the whole repository).

locals {
  firestore_indexes_file = coalesce(var.firestore_indexes_file, "${path.module}/../../../packages/jitr-gcp/src/jitr_gcp/firestore.indexes.json")
  firestore_indexes      = jsondecode(file(local.firestore_indexes_file))
  firestore_database     = var.create_firestore_database ? google_firestore_database.this[0].name : var.firestore_database
}

resource "google_firestore_database" "this" {
  count = var.create_firestore_database ? 1 : 0

  project                 = var.project_id
  name                    = var.firestore_database
  location_id             = coalesce(var.firestore_location, var.region)
  type                    = "FIRESTORE_NATIVE"
  concurrency_mode        = "OPTIMISTIC"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.this]
}

resource "google_firestore_index" "this" {
  # The file names collection group "jitr"; the indexes are created on firestore_collection.
  for_each = { for index in local.firestore_indexes.indexes : join(",", [for field in index.fields : field.fieldPath]) => index }

  project     = var.project_id
  database    = local.firestore_database
  collection  = var.firestore_collection
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.fieldPath
      order      = fields.value.order
    }
  }
}

# Field overrides: the TTL policy on expire_time, and no single-field indexes where the file
# exempts a field ("indexes": []).
resource "google_firestore_field" "this" {
  for_each = { for field in local.firestore_indexes.fieldOverrides : field.fieldPath => field }

  project    = var.project_id
  database   = local.firestore_database
  collection = var.firestore_collection
  field      = each.key

  dynamic "ttl_config" {
    for_each = try(each.value.ttl, false) ? [1] : []
    content {}
  }

  dynamic "index_config" {
    for_each = length(try(each.value.indexes, [])) == 0 ? [1] : []
    content {}
  }
}
