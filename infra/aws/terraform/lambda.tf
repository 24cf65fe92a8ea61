# Five functions from the one bundle, their log groups and triggers.

resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.functions
  name              = "/aws/lambda/${each.value.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags

  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default); jitr's logs are operational, not an audit trail.
  #checkov:skip=CKV_AWS_158:Encrypted with CloudWatch's own key unless kms_key_arn names a customer-managed key.
}

resource "aws_lambda_function" "function" {
  for_each         = local.functions
  function_name    = each.value.name
  description      = "jitr ${each.key} (${var.name_prefix})"
  role             = aws_iam_role.function[each.key].arn
  filename         = var.bundle_path
  source_code_hash = filebase64sha256(var.bundle_path)
  handler          = each.value.handler
  runtime          = var.runtime
  architectures    = [var.architecture]
  timeout          = each.value.timeout_s
  memory_size      = each.value.memory_mb
  kms_key_arn      = var.kms_key_arn
  tags             = var.tags

  reserved_concurrent_executions = each.value.reserved_concurrency

  # SnapStart: each change publishes a version, whose INIT Lambda runs once and snapshots; the
  # triggers invoke it through the alias "live" (below), never $LATEST.
  publish = var.snapstart

  dynamic "snap_start" {
    for_each = var.snapstart ? ["PublishedVersions"] : []
    content {
      apply_on = snap_start.value
    }
  }

  environment {
    variables = local.environment
  }

  depends_on = [aws_cloudwatch_log_group.function, aws_iam_role_policy.function]

  #checkov:skip=CKV_AWS_116:scaleup and lifecycle retry through their SQS queues, which have dead-letter queues; scaledown and rebalancer are not retried (the next tick repairs), the webhook is synchronous.
  #checkov:skip=CKV_AWS_117:The functions talk only to public AWS and GitHub endpoints; a VPC would add NAT costs and ENI permissions for nothing.
  #checkov:skip=CKV_AWS_50:X-Ray tracing would add xray:PutTraceSegments to every role; jitr logs one JSON line per event instead.
  #checkov:skip=CKV_AWS_272:The bundle is built by `jitr bundle aws` where it is deployed; code signing is left to the deployer (aws_lambda_code_signing_config).
  #checkov:skip=CKV_AWS_173:The environment holds names, URLs and ARNs, never secrets; set kms_key_arn to encrypt it with a customer-managed key.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded per function by function_settings.reserved_concurrency and for scaleup by scaleup_max_concurrency; unreserved by default so as not to take from the account's pool.
}

# With SnapStart, the alias every trigger invokes: the version published by the last change.
resource "aws_lambda_alias" "live" {
  for_each         = var.snapstart ? local.functions : {}
  name             = "live"
  description      = "The published version jitr's triggers invoke (SnapStart)"
  function_name    = aws_lambda_function.function[each.key].function_name
  function_version = aws_lambda_function.function[each.key].version
}

locals {
  # What each function's triggers (function URL, HTTP APIs, event source mappings, schedules) and
  # their permissions name: the alias with SnapStart, the function ($LATEST) without.
  invoked = {
    for kind, f in aws_lambda_function.function : kind => (var.snapstart ? {
      arn        = aws_lambda_alias.live[kind].arn
      invoke_arn = aws_lambda_alias.live[kind].invoke_arn
      qualifier  = aws_lambda_alias.live[kind].name
      } : {
      arn        = f.arn
      invoke_arn = f.invoke_arn
      qualifier  = null
    })
  }
}

# scaledown and rebalancer are invoked asynchronously by EventBridge: never retried, since the
# next tick repairs what a failed run left and a lease keeps overlapping runs apart.
resource "aws_lambda_function_event_invoke_config" "periodic" {
  for_each                     = toset(["scaledown", "rebalancer"])
  function_name                = aws_lambda_function.function[each.key].function_name
  qualifier                    = local.invoked[each.key].qualifier
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

# scaleup and lifecycle: SQS event source mappings that report only the failed messages.
resource "aws_lambda_event_source_mapping" "queue" {
  for_each                = local.queues
  event_source_arn        = aws_sqs_queue.main[each.key].arn
  function_name           = local.invoked[each.value.consumer].arn
  batch_size              = var.queue_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  dynamic "scaling_config" {
    for_each = each.key == "jobs" && var.scaleup_max_concurrency != null ? [var.scaleup_max_concurrency] : []
    content {
      maximum_concurrency = scaling_config.value
    }
  }
}
