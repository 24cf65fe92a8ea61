# What receives GitHub's webhooks: a function URL, or an API Gateway HTTP API.
# No IAM or JWT authorisation on either: GitHub cannot sign AWS requests, and the webhook
# function verifies X-Hub-Signature-256 over the raw body before it reads anything.

resource "aws_lambda_function_url" "webhook" {
  count              = var.webhook_endpoint == "function_url" ? 1 : 0
  function_name      = aws_lambda_function.function["webhook"].function_name
  qualifier          = local.invoked["webhook"].qualifier
  authorization_type = "NONE"

  #checkov:skip=CKV_AWS_258:GitHub cannot sign AWS requests; the function authenticates each delivery by its HMAC signature (X-Hub-Signature-256).
}

# An auth-NONE function URL answers 403 until the function's policy lets anyone call it through
# the URL (and only through the URL: the action is InvokeFunctionUrl).
resource "aws_lambda_permission" "function_url" {
  count                  = var.webhook_endpoint == "function_url" ? 1 : 0
  statement_id           = "AllowPublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.function["webhook"].function_name
  qualifier              = local.invoked["webhook"].qualifier
  principal              = "*"
  function_url_auth_type = "NONE"

  #checkov:skip=CKV_AWS_301:The public function URL is GitHub's way in; the grant covers calls through an auth-NONE URL only, and the function authenticates each delivery by its HMAC signature (X-Hub-Signature-256).
}

resource "aws_apigatewayv2_api" "webhook" {
  count         = var.webhook_endpoint == "api_gateway" ? 1 : 0
  name          = "${var.name_prefix}-webhook"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "webhook" {
  count                  = var.webhook_endpoint == "api_gateway" ? 1 : 0
  api_id                 = aws_apigatewayv2_api.webhook[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = local.invoked["webhook"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 10000
}

resource "aws_apigatewayv2_route" "webhook" {
  count              = var.webhook_endpoint == "api_gateway" ? 1 : 0
  api_id             = aws_apigatewayv2_api.webhook[0].id
  route_key          = "POST /webhook"
  target             = "integrations/${aws_apigatewayv2_integration.webhook[0].id}"
  authorization_type = "NONE"

  #checkov:skip=CKV_AWS_309:GitHub cannot sign AWS requests; the function authenticates each delivery by its HMAC signature (X-Hub-Signature-256).
}

resource "aws_cloudwatch_log_group" "api" {
  count             = var.webhook_endpoint == "api_gateway" ? 1 : 0
  name              = "/aws/apigateway/${var.name_prefix}-webhook"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags

  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default).
  #checkov:skip=CKV_AWS_158:Encrypted with CloudWatch's own key unless kms_key_arn names a customer-managed key.
}

resource "aws_apigatewayv2_stage" "webhook" {
  count       = var.webhook_endpoint == "api_gateway" ? 1 : 0
  api_id      = aws_apigatewayv2_api.webhook[0].id
  name        = "$default"
  auto_deploy = true
  tags        = var.tags

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api[0].arn
    format = jsonencode({
      requestId        = "$context.requestId", ip = "$context.identity.sourceIp", requestTime = "$context.requestTime",
      routeKey         = "$context.routeKey", status = "$context.status", responseLength = "$context.responseLength",
      integrationError = "$context.integrationErrorMessage"
    })
  }

  default_route_settings {
    throttling_burst_limit = 100
    throttling_rate_limit  = 50
  }
}

resource "aws_lambda_permission" "api" {
  count         = var.webhook_endpoint == "api_gateway" ? 1 : 0
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["webhook"].function_name
  qualifier     = local.invoked["webhook"].qualifier
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.webhook[0].execution_arn}/*/*/webhook"
}

locals {
  webhook_url = (var.webhook_endpoint == "function_url"
    ? try(aws_lambda_function_url.webhook[0].function_url, null)
  : try("${trimsuffix(aws_apigatewayv2_stage.webhook[0].invoke_url, "/")}/webhook", null))
}
