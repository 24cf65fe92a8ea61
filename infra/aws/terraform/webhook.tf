# What receives GitHub's webhooks: a function URL, or an API Gateway HTTP API (http_apis.tf).
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

locals {
  webhook_url = (var.webhook_endpoint == "function_url"
    ? try(aws_lambda_function_url.webhook[0].function_url, null)
  : try("${trimsuffix(aws_apigatewayv2_stage.http["webhook"].invoke_url, "/")}/webhook", null))
}
