# The API Gateway HTTP APIs in front of two functions, each one route, POST /<function>:
# - webhook, when webhook_endpoint = "api_gateway" (else a function URL, webhook.tf);
# - broker, which runner VMs pull their JIT config from (handoff = "broker", a pool's default);
#   left out when every pool says handoff = "metadata". Not a function URL: the functions'
#   settings carry the broker's URL (JITR_BROKER_URL, rendered into the runners' startup
#   scripts), and an HTTP API's URL is known before the function exists, a function URL's is not.
# No IAM or JWT authorisation: neither GitHub nor a VM can sign AWS requests. The webhook verifies
# X-Hub-Signature-256 over the raw body, the broker the EC2 instance identity document's
# signature, before either reads anything else.

locals {
  http_apis = merge(
    var.webhook_endpoint == "api_gateway" ? {
      webhook = { statement_id = "AllowHttpApi", timeout_ms = 10000, burst_limit = 100, rate_limit = 50 }
    } : {},
    local.broker_enabled ? {
      broker = { statement_id = "AllowBrokerHttpApi", timeout_ms = 29000, burst_limit = 200, rate_limit = 100 }
    } : {},
  )
}

resource "aws_apigatewayv2_api" "http" {
  for_each      = local.http_apis
  name          = "${var.name_prefix}-${each.key}"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "http" {
  for_each               = local.http_apis
  api_id                 = aws_apigatewayv2_api.http[each.key].id
  integration_type       = "AWS_PROXY"
  integration_uri        = local.invoked[each.key].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = each.value.timeout_ms
}

resource "aws_apigatewayv2_route" "http" {
  for_each           = local.http_apis
  api_id             = aws_apigatewayv2_api.http[each.key].id
  route_key          = "POST /${each.key}"
  target             = "integrations/${aws_apigatewayv2_integration.http[each.key].id}"
  authorization_type = "NONE"

  #checkov:skip=CKV_AWS_309:Neither GitHub nor a VM can sign AWS requests; the webhook authenticates each delivery by its HMAC signature (X-Hub-Signature-256), the broker each request by the VM's signed instance identity document.
}

resource "aws_cloudwatch_log_group" "http_api" {
  for_each          = local.http_apis
  name              = "/aws/apigateway/${var.name_prefix}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags

  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default).
  #checkov:skip=CKV_AWS_158:Encrypted with CloudWatch's own key unless kms_key_arn names a customer-managed key.
}

resource "aws_apigatewayv2_stage" "http" {
  for_each    = local.http_apis
  api_id      = aws_apigatewayv2_api.http[each.key].id
  name        = "$default"
  auto_deploy = true
  tags        = var.tags

  # The access log holds no body: a delivery carries the job, the broker's answer a JIT config.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_api[each.key].arn
    format = jsonencode({
      requestId        = "$context.requestId", ip = "$context.identity.sourceIp", requestTime = "$context.requestTime",
      routeKey         = "$context.routeKey", status = "$context.status", responseLength = "$context.responseLength",
      integrationError = "$context.integrationErrorMessage"
    })
  }

  default_route_settings {
    throttling_burst_limit = each.value.burst_limit
    throttling_rate_limit  = each.value.rate_limit
  }
}

resource "aws_lambda_permission" "http_api" {
  for_each      = local.http_apis
  statement_id  = each.value.statement_id
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  qualifier     = local.invoked[each.key].qualifier
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http[each.key].execution_arn}/*/*/${each.key}"
}

locals {
  broker_url = local.broker_enabled ? "${aws_apigatewayv2_api.http["broker"].api_endpoint}/broker" : null
}

# Where the webhook's HTTP API was before it shared these resources with the broker's.
moved {
  from = aws_apigatewayv2_api.webhook[0]
  to   = aws_apigatewayv2_api.http["webhook"]
}
moved {
  from = aws_apigatewayv2_integration.webhook[0]
  to   = aws_apigatewayv2_integration.http["webhook"]
}
moved {
  from = aws_apigatewayv2_route.webhook[0]
  to   = aws_apigatewayv2_route.http["webhook"]
}
moved {
  from = aws_cloudwatch_log_group.api[0]
  to   = aws_cloudwatch_log_group.http_api["webhook"]
}
moved {
  from = aws_apigatewayv2_stage.webhook[0]
  to   = aws_apigatewayv2_stage.http["webhook"]
}
moved {
  from = aws_lambda_permission.api[0]
  to   = aws_lambda_permission.http_api["webhook"]
}
