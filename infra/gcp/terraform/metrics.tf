# jitr's metrics (docs/metrics.md): the functions write one structured log entry per sample
# (jsonPayload.logger = "jitr.metrics", .metric, .value and one field per label); log-based
# metrics turn them into Cloud Monitoring metrics (logging.googleapis.com/user/<prefix>/<name>).
# The webhook's deliveries are counted from its existing log line. A dashboard shows them all;
# alert policies fire on dead letters and on runners that exit without taking a job.

locals {
  # jitr_core.metrics.CATALOGUE, name => kind, labels and (for the webhook's) the log line
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
  metric_type = { for name, _ in local.metrics : name => "logging.googleapis.com/user/${local.prefix}/${name}" }
  functions_filter = join(" OR ", [
    for name, _ in local.functions : "resource.labels.service_name=\"${local.prefix}-${name}\""
  ])
  webhook_filter = "resource.labels.service_name=\"${local.prefix}-webhook\""

  # Counters count entries; distributions (and the gauge, whose latest value a chart reads as a
  # minimum) take jsonPayload.value.
  metric_aligners = {
    counter      = [["ALIGN_DELTA", "REDUCE_SUM"]]
    distribution = [["ALIGN_DELTA", "REDUCE_PERCENTILE_50"], ["ALIGN_DELTA", "REDUCE_PERCENTILE_95"], ["ALIGN_DELTA", "REDUCE_PERCENTILE_99"]]
    gauge        = [["ALIGN_DELTA", "REDUCE_MIN"]]
  }
  metric_tiles = [
    for i, name in keys(local.metrics) : {
      xPos   = (i % 3) * 16
      yPos   = floor(i / 3) * 16
      width  = 16
      height = 16
      widget = {
        title = name
        xyChart = {
          dataSets = [
            for aligners in local.metric_aligners[local.metrics[name].kind] : {
              plotType = "LINE"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.metric_type[name]}\" resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = aligners[0]
                    crossSeriesReducer = aligners[1]
                    groupByFields      = [for label in local.metrics[name].labels : "metric.label.${label}"]
                  }
                }
              }
            }
          ]
        }
      }
    }
  ]
}

resource "google_logging_metric" "jitr" {
  for_each = local.metrics

  project = var.project_id
  name    = "${local.prefix}/${each.key}"
  filter = join(" AND ", each.value.log_message != null ? [
    "resource.type=\"cloud_run_revision\"", local.webhook_filter,
    "jsonPayload.logger=\"jitr.webhook\"", "jsonPayload.message=\"${each.value.log_message}\"",
    ] : [
    "resource.type=\"cloud_run_revision\"", "(${local.functions_filter})",
    "jsonPayload.logger=\"jitr.metrics\"", "jsonPayload.metric=\"${each.key}\"",
  ])
  label_extractors = { for label in each.value.labels : label => "EXTRACT(jsonPayload.${label})" }
  value_extractor  = each.value.kind == "counter" ? null : "EXTRACT(jsonPayload.value)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = each.value.kind == "counter" ? "INT64" : "DISTRIBUTION"
    unit         = endswith(each.key, "_seconds") ? "s" : "1"
    display_name = "jitr ${each.key}"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }

  dynamic "bucket_options" {
    for_each = each.value.kind == "counter" ? [] : [each.value.kind]
    content {
      # seconds of queue or boot time up to hours; requests left up to GitHub's 15,000 an hour
      exponential_buckets {
        num_finite_buckets = 32
        growth_factor      = 1.5
        scale              = 1
      }
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_dashboard" "jitr" {
  count   = var.create_dashboard ? 1 : 0
  project = var.project_id
  dashboard_json = jsonencode({
    displayName  = "jitr ${local.prefix}"
    mosaicLayout = { columns = 48, tiles = local.metric_tiles }
  })

  depends_on = [google_logging_metric.jitr]
}

# Dead letters: jitr put a message in a dead-letter topic (a poison message, a last try), or Pub/Sub
# did after max_deliveries; `jitr status` shows them with their reasons.
resource "google_monitoring_alert_policy" "dead_letters" {
  count                 = var.create_alerts ? 1 : 0
  project               = var.project_id
  display_name          = "jitr ${local.prefix}: dead letters"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "jitr dead-lettered a message"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["dead_letters"]}\" resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "messages in a dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" resource.type=\"pubsub_subscription\" AND (${join(" OR ", [for queue, _ in local.dead_letter_topic_names : "resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter[queue].name}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "jitr gave up on a message: `jitr status` lists the dead letters with their reasons (docs/metrics.md)."
    mime_type = "text/markdown"
  }

  depends_on = [google_logging_metric.jitr]
}

resource "google_monitoring_alert_policy" "no_job_exits" {
  count                 = var.create_alerts ? 1 : 0
  project               = var.project_id
  display_name          = "jitr ${local.prefix}: runners exiting without a job"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "runner_no_job_exits over 15 minutes"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["runner_no_job_exits"]}\" resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.no_job_exit_threshold - 1
      duration        = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.pool"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "Runners exited without taking a job (a broken image, network or JIT config); the pool is in the incident's labels (docs/metrics.md)."
    mime_type = "text/markdown"
  }

  depends_on = [google_logging_metric.jitr]
}
