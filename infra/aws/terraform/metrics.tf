# jitr's metrics (docs/metrics.md): the functions write them as CloudWatch Embedded Metric Format
# lines in the deployment's namespace, its name prefix (JITR_AWS_METRICS_NAMESPACE), so that
# deployments sharing an account and region keep their metrics and alarms apart; the webhook's
# deliveries are counted from its existing log line by metric filters. A dashboard shows them
# all, and an alarm fires on runners that exit without taking a job. The dead-letter alarms are
# in alarms.tf (the queues' depth).

locals {
  metrics_namespace = var.name_prefix

  # jitr_core.metrics.CATALOGUE, name => kind, dimensions and (for the webhook's) the log line
  # counted; infra/tests checks that the two are the same.
  metrics = {
    jobs_routed                 = { kind = "counter", labels = ["queue"], log_message = "routed" }
    jobs_ignored                = { kind = "counter", labels = [], log_message = "job ignored" }
    deliveries_rejected         = { kind = "counter", labels = [], log_message = "rejected delivery" }
    jobs_received               = { kind = "counter", labels = ["pool"], log_message = null }
    jobs_launched               = { kind = "counter", labels = ["pool", "market"], log_message = null }
    jobs_completed              = { kind = "counter", labels = ["pool", "conclusion"], log_message = null }
    queue_time_seconds          = { kind = "distribution", labels = ["pool"], log_message = null }
    boot_time_seconds           = { kind = "distribution", labels = ["pool"], log_message = null }
    launch_attempts             = { kind = "counter", labels = ["pool", "machine_type", "placement", "market"], log_message = null }
    launch_failures             = { kind = "counter", labels = ["pool", "reason", "placement"], log_message = null }
    capacity_errors             = { kind = "counter", labels = ["machine_type", "zone"], log_message = null }
    runner_no_job_exits         = { kind = "counter", labels = ["pool"], log_message = null }
    spot_interruptions          = { kind = "counter", labels = ["pool"], log_message = null }
    job_reruns                  = { kind = "counter", labels = ["pool"], log_message = null }
    runners_retired             = { kind = "counter", labels = ["pool", "reason"], log_message = null }
    ghosts_removed              = { kind = "counter", labels = [], log_message = null }
    orphans_removed             = { kind = "counter", labels = ["pool"], log_message = null }
    dead_letters                = { kind = "counter", labels = ["queue"], log_message = null }
    github_rate_limit_remaining = { kind = "gauge", labels = [], log_message = null }
    function_errors             = { kind = "counter", labels = ["function"], log_message = null }
  }
  log_counted_metrics = { for name, m in local.metrics : name => m if m.log_message != null }

  # One dashboard widget per metric: every label set of it (a SEARCH over its dimensions).
  metric_statistics = { counter = ["Sum"], distribution = ["p50", "p95", "p99"], gauge = ["Minimum"] }
  metric_widgets = [
    for i, name in keys(local.metrics) : {
      type   = "metric"
      x      = (i % 3) * 8
      y      = floor(i / 3) * 6
      width  = 8
      height = 6
      properties = {
        title  = name
        region = local.region
        view   = "timeSeries"
        period = 300
        metrics = [
          for j, stat in local.metric_statistics[local.metrics[name].kind] : [{
            id    = "m${j}"
            label = ""
            expression = format(
              "SEARCH('{%s} MetricName=\"%s\"', '%s', 300)",
              join(",", concat(["\"${local.metrics_namespace}\""], local.metrics[name].labels)), name, stat,
            )
          }]
        ]
      }
    }
  ]
}

resource "aws_cloudwatch_log_metric_filter" "deliveries" {
  for_each       = local.log_counted_metrics
  name           = "${var.name_prefix}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.function["webhook"].name
  pattern        = "{ ($.logger = \"jitr.webhook\") && ($.message = \"${each.value.log_message}\") }"

  metric_transformation {
    name       = each.key
    namespace  = local.metrics_namespace
    value      = "1"
    unit       = "Count"
    dimensions = { for label in each.value.labels : label => "$.${label}" }
  }
}

resource "aws_cloudwatch_dashboard" "jitr" {
  count          = var.create_dashboard ? 1 : 0
  dashboard_name = var.name_prefix
  dashboard_body = jsonencode({ widgets = local.metric_widgets })
}

# On the total over the pools (jitr publishes each labelled metric without dimensions too); the
# dashboard's widget shows which pool.
resource "aws_cloudwatch_metric_alarm" "no_job_exits" {
  count               = var.create_alarms ? 1 : 0
  alarm_name          = "${var.name_prefix}-no-job-exits"
  alarm_description   = "Runners exited without taking a job (a broken image, network or JIT config): the dashboard's runner_no_job_exits widget names the pool; see docs/metrics.md."
  namespace           = local.metrics_namespace
  metric_name         = "runner_no_job_exits"
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = var.no_job_exit_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}
