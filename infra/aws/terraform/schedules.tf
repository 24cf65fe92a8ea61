# scaledown every 5 minutes, rebalancer every minute: EventBridge rules, never retried.

locals {
  schedules = {
    scaledown  = var.scaledown_schedule
    rebalancer = var.rebalancer_schedule
  }
}

resource "aws_cloudwatch_event_rule" "periodic" {
  for_each            = local.schedules
  name                = "${var.name_prefix}-${each.key}"
  description         = "jitr ${each.key} pass (${var.name_prefix})"
  schedule_expression = each.value
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "periodic" {
  for_each  = local.schedules
  rule      = aws_cloudwatch_event_rule.periodic[each.key].name
  target_id = "jitr-${each.key}"
  arn       = local.invoked[each.key].arn

  retry_policy {
    maximum_retry_attempts       = 0
    maximum_event_age_in_seconds = 60
  }
}

resource "aws_lambda_permission" "periodic" {
  for_each      = local.schedules
  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  qualifier     = local.invoked[each.key].qualifier
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.periodic[each.key].arn
}
