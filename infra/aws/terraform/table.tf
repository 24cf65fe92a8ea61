# The state store: one table, exactly as jitr_aws.dynamodb.table_definition describes it
# (key pk, index by_state on kind_state/updated_at projecting everything, TTL on expires_at).

resource "aws_dynamodb_table" "state" {
  name                        = "${var.name_prefix}-state"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = false
  tags                        = var.tags

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "kind_state"
    type = "S"
  }
  attribute {
    name = "updated_at"
    type = "N"
  }

  global_secondary_index {
    name            = "by_state"
    hash_key        = "kind_state"
    range_key       = "updated_at"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = var.kms_key_arn != null
    kms_key_arn = var.kms_key_arn
  }

  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key unless kms_key_arn names a customer-managed key.
}
