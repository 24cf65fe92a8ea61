# EC2 Spot Instance Interruption Warnings (and, with rebalance_recommendations, rebalance
# recommendations) to the lifecycle queue: the lifecycle function finds the runner by instance
# id, marks it, replaces it if it had not started its job, and re-runs a job GitHub then fails
# (pools with rerun_on_interruption). Warnings for instances of other deployments in the account
# reach the queue too and are ignored ("not-our-vm"): an event carries no instance tags.

locals {
  interruption_detail_types = concat(
    ["EC2 Spot Instance Interruption Warning"],
    var.rebalance_recommendations ? ["EC2 Instance Rebalance Recommendation"] : [],
  )
}

resource "aws_cloudwatch_event_rule" "spot_interruption" {
  count       = var.spot_interruptions ? 1 : 0
  name        = "${var.name_prefix}-spot-interruption"
  description = "EC2 spot interruption warnings to the jitr lifecycle queue (${var.name_prefix})"
  event_pattern = jsonencode({
    source        = ["aws.ec2"]
    "detail-type" = local.interruption_detail_types
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "spot_interruption" {
  count     = var.spot_interruptions ? 1 : 0
  rule      = aws_cloudwatch_event_rule.spot_interruption[0].name
  target_id = "jitr-lifecycle"
  arn       = aws_sqs_queue.main["lifecycle"].arn

  retry_policy {
    maximum_retry_attempts       = 10
    maximum_event_age_in_seconds = 600 # a warning comes two minutes ahead: later ones still mark the job
  }
}

# EventBridge may send to the lifecycle queue, and only for this rule.
resource "aws_sqs_queue_policy" "lifecycle" {
  count     = var.spot_interruptions ? 1 : 0
  queue_url = aws_sqs_queue.main["lifecycle"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "SpotInterruptionWarnings"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.main["lifecycle"].arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.spot_interruption[0].arn } }
    }]
  })
}
