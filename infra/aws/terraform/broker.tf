# The broker's endpoint, which runner VMs pull their JIT config from (handoff = "broker", a pool's
# default); left out when every pool says handoff = "metadata". An API Gateway HTTP API with one
# route, POST /broker, to the broker function. Not a function URL: the functions' settings carry
# the broker's URL (JITR_BROKER_URL, rendered into the runners' startup scripts), and an HTTP
# API's URL is known before the function exists, a function URL's is not.
# No IAM or JWT authorisation: a VM cannot sign AWS requests; the function verifies the EC2
# instance identity document's signature before it reads anything else.

resource "aws_apigatewayv2_api" "broker" {
  count         = local.broker_enabled ? 1 : 0
  name          = "${var.name_prefix}-broker"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "broker" {
  count                  = local.broker_enabled ? 1 : 0
  api_id                 = aws_apigatewayv2_api.broker[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = local.invoked["broker"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "broker" {
  count              = local.broker_enabled ? 1 : 0
  api_id             = aws_apigatewayv2_api.broker[0].id
  route_key          = "POST /broker"
  target             = "integrations/${aws_apigatewayv2_integration.broker[0].id}"
  authorization_type = "NONE"

  #checkov:skip=CKV_AWS_309:A VM cannot sign AWS requests; the broker authenticates each request by the VM's signed instance identity document.
}

resource "aws_cloudwatch_log_group" "broker_api" {
  count             = local.broker_enabled ? 1 : 0
  name              = "/aws/apigateway/${var.name_prefix}-broker"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags

  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default).
  #checkov:skip=CKV_AWS_158:Encrypted with CloudWatch's own key unless kms_key_arn names a customer-managed key.
}

resource "aws_apigatewayv2_stage" "broker" {
  count       = local.broker_enabled ? 1 : 0
  api_id      = aws_apigatewayv2_api.broker[0].id
  name        = "$default"
  auto_deploy = true
  tags        = var.tags

  # The access log holds no body: the answer carries a JIT config, the request an identity proof.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.broker_api[0].arn
    format = jsonencode({
      requestId        = "$context.requestId", ip = "$context.identity.sourceIp", requestTime = "$context.requestTime",
      routeKey         = "$context.routeKey", status = "$context.status", responseLength = "$context.responseLength",
      integrationError = "$context.integrationErrorMessage"
    })
  }

  default_route_settings {
    throttling_burst_limit = 200
    throttling_rate_limit  = 100
  }
}

resource "aws_lambda_permission" "broker" {
  count         = local.broker_enabled ? 1 : 0
  statement_id  = "AllowBrokerHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["broker"].function_name
  qualifier     = local.invoked["broker"].qualifier
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.broker[0].execution_arn}/*/*/broker"
}

locals {
  broker_url = local.broker_enabled ? "${aws_apigatewayv2_api.broker[0].api_endpoint}/broker" : null
}
