# `terraform test` (Terraform >= 1.7 or OpenTofu): the snapstart switch. Off (the default), the
# triggers invoke $LATEST as before; on, every function publishes versions with SnapStart and
# every trigger and permission names its alias "live". The AWS provider is mocked.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mocked" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/mocked" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = { arn = "arn:aws:sqs:eu-west-1:123456789012:mocked", url = "https://sqs.eu-west-1.amazonaws.com/123456789012/mocked" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/mocked" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mocked" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mocked-AbCdEf" }
  }
  mock_resource "aws_secretsmanager_secret_version" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mocked-AbCdEf" }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn        = "arn:aws:lambda:eu-west-1:123456789012:function:mocked"
      invoke_arn = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:mocked/invocations"
    }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = { arn = "arn:aws:events:eu-west-1:123456789012:rule/mocked" }
  }
  mock_resource "aws_security_group" {
    defaults = { id = "sg-0123456789abcdef0" }
  }
  mock_resource "aws_apigatewayv2_api" {
    defaults = { execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:mocked" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_lambda_alias" {
    defaults = {
      arn        = "arn:aws:lambda:eu-west-1:123456789012:function:mocked:live"
      invoke_arn = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:mocked:live/invocations"
    }
  }
}

variables {
  bundle_path    = "tests/bundle.zip"
  github_app_id  = "123456"
  webhook_secret = "not-a-secret-only-a-test-value"
  # checkov:skip=CKV_SECRET_6:A placeholder in PEM armour (the variable checks for it), not a key.
  github_app_private_key = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
  vpc_id                 = "vpc-0123456789abcdef0"
  pools = [{
    name          = "linux"
    labels        = ["self-hosted", "linux"]
    machine_types = ["m7i.large"]
    subnet_ids    = ["subnet-0aaaaaaaaaaaaaaaa"]
    image         = "ami-0123456789abcdef0"
  }]
}

# The aliases' ARNs, which the mocked provider would make up, name their function (unused where
# snapstart is off and there are no aliases).
override_resource {
  target = aws_lambda_alias.live["webhook"]
  values = { arn = "arn:aws:lambda:eu-west-1:123456789012:function:jitr-webhook:live", invoke_arn = "webhook-live-invoke-arn" }
}
override_resource {
  target = aws_lambda_alias.live["scaleup"]
  values = { arn = "arn:aws:lambda:eu-west-1:123456789012:function:jitr-scaleup:live", invoke_arn = "scaleup-live-invoke-arn" }
}
override_resource {
  target = aws_lambda_alias.live["lifecycle"]
  values = { arn = "arn:aws:lambda:eu-west-1:123456789012:function:jitr-lifecycle:live", invoke_arn = "lifecycle-live-invoke-arn" }
}
override_resource {
  target = aws_lambda_alias.live["scaledown"]
  values = { arn = "arn:aws:lambda:eu-west-1:123456789012:function:jitr-scaledown:live", invoke_arn = "scaledown-live-invoke-arn" }
}
override_resource {
  target = aws_lambda_alias.live["rebalancer"]
  values = { arn = "arn:aws:lambda:eu-west-1:123456789012:function:jitr-rebalancer:live", invoke_arn = "rebalancer-live-invoke-arn" }
}
override_resource {
  target = aws_lambda_alias.live["broker"]
  values = { arn = "arn:aws:lambda:eu-west-1:123456789012:function:jitr-broker:live", invoke_arn = "broker-live-invoke-arn" }
}

run "snapstart_is_off_by_default" {
  command = apply

  assert {
    condition     = length(aws_lambda_alias.live) == 0
    error_message = "without snapstart there are no aliases"
  }
  assert {
    condition     = alltrue([for f in aws_lambda_function.function : !f.publish && length(f.snap_start) == 0])
    error_message = "without snapstart the functions publish no versions and have no snap_start"
  }
  assert {
    condition     = aws_lambda_event_source_mapping.queue["jobs"].function_name == aws_lambda_function.function["scaleup"].arn
    error_message = "without snapstart the jobs queue feeds the function itself ($LATEST)"
  }
  assert {
    condition     = aws_lambda_function_url.webhook[0].qualifier == null && aws_cloudwatch_event_target.periodic["scaledown"].arn == aws_lambda_function.function["scaledown"].arn
    error_message = "without snapstart the function URL and the schedules name the function itself"
  }
  assert {
    condition     = alltrue([for p in aws_lambda_permission.periodic : p.qualifier == null]) && alltrue([for c in aws_lambda_function_event_invoke_config.periodic : c.qualifier == null])
    error_message = "without snapstart the permissions and retry settings are the function's"
  }
}

run "snapstart_publishes_versions_and_every_trigger_invokes_the_alias" {
  command = apply

  variables {
    snapstart = true
  }

  assert {
    condition     = contains(keys(aws_lambda_alias.live), "broker")
    error_message = "the broker (there by default) has its alias too"
  }
  assert {
    condition     = alltrue([for f in aws_lambda_function.function : f.publish && f.snap_start[0].apply_on == "PublishedVersions"])
    error_message = "with snapstart every function publishes versions with SnapStart on them"
  }
  assert {
    condition     = sort(keys(aws_lambda_alias.live)) == sort(keys(aws_lambda_function.function))
    error_message = "with snapstart every function has an alias"
  }
  assert {
    condition = alltrue([
      for kind, alias in aws_lambda_alias.live :
      alias.name == "live" && alias.function_name == aws_lambda_function.function[kind].function_name && alias.function_version == aws_lambda_function.function[kind].version
    ])
    error_message = "each alias is named live and points at its function's last published version"
  }
  assert {
    condition = (
      aws_lambda_event_source_mapping.queue["jobs"].function_name == aws_lambda_alias.live["scaleup"].arn
      && aws_lambda_event_source_mapping.queue["lifecycle"].function_name == aws_lambda_alias.live["lifecycle"].arn
    )
    error_message = "the queues feed the aliases of scaleup and lifecycle"
  }
  assert {
    condition     = aws_lambda_function_url.webhook[0].qualifier == "live"
    error_message = "the function URL invokes the webhook's alias"
  }
  assert {
    condition = alltrue([
      for kind in ["scaledown", "rebalancer"] :
      aws_cloudwatch_event_target.periodic[kind].arn == aws_lambda_alias.live[kind].arn
      && aws_lambda_permission.periodic[kind].qualifier == "live"
      && aws_lambda_function_event_invoke_config.periodic[kind].qualifier == "live"
    ])
    error_message = "the schedules invoke the aliases, which EventBridge may invoke and which are never retried"
  }
}

run "snapstart_behind_http_apis" {
  command = apply

  variables {
    snapstart        = true
    webhook_endpoint = "api_gateway"
  }

  assert {
    condition     = aws_apigatewayv2_integration.http["webhook"].integration_uri == "webhook-live-invoke-arn" && aws_lambda_permission.http_api["webhook"].qualifier == "live"
    error_message = "the webhook's HTTP API invokes its alias, which API Gateway may invoke"
  }
  assert {
    condition     = aws_apigatewayv2_integration.http["broker"].integration_uri == "broker-live-invoke-arn" && aws_lambda_permission.http_api["broker"].qualifier == "live"
    error_message = "the broker's HTTP API invokes its alias, which API Gateway may invoke"
  }
}
