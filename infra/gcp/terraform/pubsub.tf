# The jobs and lifecycle queues: a topic each, delivered by a push subscription (OIDC-authenticated)
# to its function, with a dead-letter topic. The handlers take Pub/Sub push envelopes (and
# Eventarc CloudEvents) and answer 200 to acknowledge, 503 to be redelivered.

resource "google_pubsub_topic" "queue" {
  #checkov:skip=CKV_GCP_83:Messages carry job ids and repository names, no secrets; Google-managed encryption applies.
  for_each = local.topic_names

  project = var.project_id
  name    = each.value
  labels  = local.labels

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are queue messages (job ids, repository names), no secrets; Google-managed encryption applies.
  for_each = local.dead_letter_topic_names

  project = var.project_id
  name    = each.value
  labels  = local.labels

  depends_on = [google_project_service.this]
}

locals {
  all_topics = merge(
    google_pubsub_topic.queue,
    { for queue, topic in google_pubsub_topic.dead_letter : "${queue}-dead-letter" => topic },
  )
}

resource "google_pubsub_subscription" "push" {
  for_each = local.queues

  project = var.project_id
  name    = "${local.prefix}-${each.key}-push"
  topic   = google_pubsub_topic.queue[each.key].id
  labels  = local.labels

  # Pub/Sub waits this long for the function's answer: its timeout plus the 20 s a handler may
  # hold a message that is almost due, plus a margin (at most 600 s).
  ack_deadline_seconds       = local.functions[each.value].timeout_s + 30
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = "" # never expires
  }

  push_config {
    push_endpoint = google_cloudfunctions2_function.this[each.value].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.this["push"].email
      audience              = google_cloudfunctions2_function.this[each.value].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_deliveries
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_agent]
}

# Read by `jitr status` (it peeks at dead letters and releases them at once).
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.dead_letter_topic_names

  project = var.project_id
  name    = each.value
  topic   = google_pubsub_topic.dead_letter[each.key].id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent moves undeliverable messages: it publishes to the dead-letter topic
# and acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_agent" {
  for_each = local.dead_letter_topic_names

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_agent" {
  for_each = local.queues

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
