# GCE preemptions to the lifecycle topic: a log sink on the compute.instances.preempted system
# event of runner VMs (their names start with jitr-), published by the sink's own writer
# identity. The runner VMs get no permission for it. The lifecycle function reads the LogEntry,
# marks the runner named in it, and re-runs its job where a pool sets rerun_on_interruption.

resource "google_logging_project_sink" "preemptions" {
  project                = var.project_id
  name                   = "${local.prefix}-preemptions"
  description            = "GCE preemptions of jitr runner VMs (${local.prefix}) to the lifecycle topic"
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.queue["lifecycle"].id}"
  unique_writer_identity = true
  filter = join(" AND ", [
    "logName=\"projects/${var.project_id}/logs/cloudaudit.googleapis.com%2Fsystem_event\"",
    "protoPayload.methodName=\"compute.instances.preempted\"",
    "resource.type=\"gce_instance\"",
    "protoPayload.resourceName:\"/instances/jitr-\"",
  ])

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic_iam_member" "preemption_sink" {
  project = var.project_id
  topic   = google_pubsub_topic.queue["lifecycle"].name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.preemptions.writer_identity
}
