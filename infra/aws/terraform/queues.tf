# The jobs and lifecycle queues, each with a dead-letter queue.

locals {
  queues = {
    # AWS's advice for event source mappings: a visibility timeout of six times the function's timeout.
    jobs      = { consumer = "scaleup", visibility_timeout_s = 6 * local.functions.scaleup.timeout_s }
    lifecycle = { consumer = "lifecycle", visibility_timeout_s = 6 * local.functions.lifecycle.timeout_s }
  }
}

resource "aws_sqs_queue" "dead_letter" {
  for_each                  = local.queues
  name                      = "${var.name_prefix}-${each.key}-dlq"
  message_retention_seconds = 1209600 # 14 days, SQS's longest: time to look at what failed
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn
  tags                      = var.tags
}

resource "aws_sqs_queue" "main" {
  for_each                   = local.queues
  name                       = "${var.name_prefix}-${each.key}"
  visibility_timeout_seconds = each.value.visibility_timeout_s
  message_retention_seconds  = 345600 # 4 days
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  kms_master_key_id          = var.kms_key_arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}
