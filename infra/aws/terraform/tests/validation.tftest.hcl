# `terraform test` (Terraform >= 1.7 or OpenTofu): what the variables refuse, and how pools are
# rendered into JITR_POOLS (each with its handoff: "broker" unless the pool says "metadata"). The AWS provider is mocked: nothing is created and no credentials
# are needed.

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
  # The broker's HTTP API is there by default: every run that creates it gets this endpoint.
  mock_resource "aws_apigatewayv2_api" {
    defaults = {
      execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:brk123"
      api_endpoint  = "https://brk123.execute-api.eu-west-1.amazonaws.com"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
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

run "pools_render_what_jitr_reads" {
  command = apply

  variables {
    pools = [
      {
        name          = "linux"
        labels        = ["self-hosted", "linux"]
        machine_types = ["m7i.large", "m6i.large"]
        subnet_ids    = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
        image         = "ami-0123456789abcdef0"
      },
      {
        name                  = "arm"
        labels                = ["self-hosted", "linux", "arm64"]
        machine_types         = ["m7g.large"]
        subnet_ids            = ["subnet-0aaaaaaaaaaaaaaaa"]
        image                 = "resolve:ssm:/aws/service/ami/arm64"
        arch                  = "arm64"
        disk_gb               = 60
        spot                  = false
        rerun_on_interruption = true
        log_shipping          = false
        security_group_ids    = ["sg-0123456789abcdef0"]
      },
    ]
    runner_tags = { team = "platform" }
  }

  assert {
    condition = jsondecode(aws_lambda_function.function["scaleup"].environment[0].variables.JITR_POOLS) == [
      {
        name       = "linux", labels = ["self-hosted", "linux"], machine_types = ["m7i.large", "m6i.large"],
        placements = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"], image = "ami-0123456789abcdef0",
        handoff    = "broker"
      },
      {
        name       = "arm", labels = ["self-hosted", "linux", "arm64"], machine_types = ["m7g.large"],
        placements = ["subnet-0aaaaaaaaaaaaaaaa"], image = "resolve:ssm:/aws/service/ami/arm64", arch = "arm64",
        disk_gb    = 60, spot = false, rerun_on_interruption = true,
        options    = { log_shipping = false, security_group_ids = ["sg-0123456789abcdef0"] },
        handoff    = "broker"
      },
    ]
    error_message = "JITR_POOLS is not the pools as jitr's settings loader reads them"
  }
  assert {
    condition     = aws_lambda_function.function["webhook"].environment[0].variables.JITR_AWS_TAGS == "jitr:deployment=jitr,team=platform"
    error_message = "JITR_AWS_TAGS must carry the runner tags and the deployment tag"
  }
  assert {
    condition     = length(aws_iam_role_policy.runner) == 1 && length(aws_cloudwatch_log_group.runner) == 1
    error_message = "log shipping (on by default) needs the runner policy and a log group for each pool that ships"
  }
  assert {
    condition = alltrue([
      for kind, actions in {
        scaledown = ["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole", "ssm:GetParameters"]
        broker    = ["dynamodb:DeleteItem"]
      } : length(setintersection(flatten([for s in jsondecode(aws_iam_role_policy.function[kind].policy).Statement : s.Action]), actions)) == 0
    ])
    error_message = "without warm VMs scaledown launches nothing and the broker deletes no record"
  }
  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.function["scaleup"].policy).Statement : s.Resource if s.Sid == "ResolveImageParameters"
    ] == [["arn:aws:ssm:eu-west-1::parameter/aws/service/ami/arm64"]]
    error_message = "a public parameter's ARN (a name under /aws/) names no account"
  }
}

run "api_gateway_instead_of_a_function_url" {
  command = plan

  variables {
    webhook_endpoint = "api_gateway"
  }

  assert {
    condition     = length(aws_lambda_function_url.webhook) == 0 && toset(keys(aws_apigatewayv2_route.http)) == toset(["webhook", "broker"])
    error_message = "api_gateway replaces the function URL with an HTTP API route"
  }
  assert {
    condition     = aws_apigatewayv2_route.http["webhook"].route_key == "POST /webhook"
    error_message = "GitHub POSTs to /webhook"
  }
}

run "api_gateway_webhook_url" {
  command = apply

  variables {
    webhook_endpoint = "api_gateway"
  }

  override_resource {
    target = aws_apigatewayv2_stage.http["webhook"]
    values = { invoke_url = "https://abc123.execute-api.eu-west-1.amazonaws.com/" }
  }

  assert {
    condition     = output.webhook_url == "https://abc123.execute-api.eu-west-1.amazonaws.com/webhook"
    error_message = "the webhook URL is the stage's URL with /webhook, without a double slash"
  }
}

run "no_pools" {
  command = plan
  variables { pools = [] }
  expect_failures = [var.pools]
}

run "duplicate_pool_names" {
  command = plan
  variables {
    pools = [
      { name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a" },
      { name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a" },
    ]
  }
  expect_failures = [var.pools]
}

run "pool_without_self_hosted" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["linux"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a" }]
  }
  expect_failures = [var.pools]
}

run "pool_name_jitr_would_refuse" {
  command = plan
  variables {
    pools = [{ name = "Linux_X64", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a" }]
  }
  expect_failures = [var.pools]
}

run "pool_without_subnets" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = [], image = "ami-0a" }]
  }
  expect_failures = [var.pools]
}

run "pool_image_not_an_ami" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ubuntu-24.04" }]
  }
  expect_failures = [var.pools]
}

run "pool_disk_too_small" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", disk_gb = 4 }]
  }
  expect_failures = [var.pools]
}

run "unknown_architecture" {
  command = plan
  variables { architecture = "aarch64" }
  expect_failures = [var.architecture]
}

run "unsupported_runtime" {
  command = plan
  variables { runtime = "python3.11" }
  expect_failures = [var.runtime]
}

run "rebalancer_timeout_over_its_lease" {
  command = plan
  variables { function_settings = { rebalancer = { timeout_s = 90 } } }
  expect_failures = [var.function_settings]
}

run "reserved_runner_tag" {
  command = plan
  variables { runner_tags = { "managed-by" = "me" } }
  expect_failures = [var.runner_tags]
}

run "too_many_runner_tags" {
  command = plan
  variables { runner_tags = { for i in range(43) : "t${i}" => "v" } }
  expect_failures = [var.runner_tags]
}

run "setting_the_module_owns" {
  command = plan
  variables { jitr_settings = { JITR_POOLS = "[]" } }
  expect_failures = [var.jitr_settings]
}

run "unknown_webhook_endpoint" {
  command = plan
  variables { webhook_endpoint = "alb" }
  expect_failures = [var.webhook_endpoint]
}

run "neither_secret_nor_its_arn" {
  command = plan
  variables { webhook_secret = null }
  expect_failures = [aws_secretsmanager_secret.webhook]
}

run "pool_sizing_labels_render" {
  command = apply

  variables {
    pools = [{
      name                = "linux"
      labels              = ["self-hosted", "linux"]
      machine_types       = ["m7i.large"]
      subnet_ids          = ["subnet-0aaaaaaaaaaaaaaaa"]
      image               = "ami-0123456789abcdef0"
      machine_type_labels = ["c6i.*", "m7i.2xlarge"]
      machine_sizes       = [{ machine_type = "c6i.2xlarge", cpu = 8, ram = 16 }]
    }]
  }

  assert {
    condition = jsondecode(aws_lambda_function.function["scaleup"].environment[0].variables.JITR_POOLS) == [
      {
        name                = "linux", labels = ["self-hosted", "linux"], machine_types = ["m7i.large"],
        placements          = ["subnet-0aaaaaaaaaaaaaaaa"], image = "ami-0123456789abcdef0", handoff = "broker",
        machine_type_labels = ["c6i.*", "m7i.2xlarge"],
        machine_sizes       = [{ machine_type = "c6i.2xlarge", cpu = 8, ram = 16 }]
      },
    ]
    error_message = "JITR_POOLS must carry the pool's machine_type_labels and machine_sizes"
  }
}

run "a_broker_pool_gets_the_broker_function_behind_an_http_api" {
  command = apply

  variables {
    pools = [{
      name          = "linux"
      labels        = ["self-hosted", "linux"]
      machine_types = ["m7i.large"]
      subnet_ids    = ["subnet-0aaaaaaaaaaaaaaaa"]
      image         = "ami-0123456789abcdef0"
      handoff       = "broker"
    }]
  }

  override_resource {
    target = aws_apigatewayv2_api.http["broker"]
    values = { api_endpoint = "https://brk123.execute-api.eu-west-1.amazonaws.com", execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:brk123" }
  }

  assert {
    condition     = aws_lambda_function.function["broker"].handler == "jitr_functions.aws.broker"
    error_message = "the broker function runs jitr_functions.aws.broker"
  }
  assert {
    condition = alltrue([
      for f in aws_lambda_function.function : f.environment[0].variables.JITR_BROKER_URL == "https://brk123.execute-api.eu-west-1.amazonaws.com/broker"
    ])
    error_message = "every function's settings name the broker's URL (scaleup renders it into the scripts)"
  }
  assert {
    condition     = jsondecode(aws_lambda_function.function["scaleup"].environment[0].variables.JITR_POOLS)[0].handoff == "broker"
    error_message = "JITR_POOLS carries the pool's handoff"
  }
  assert {
    condition     = aws_apigatewayv2_route.http["broker"].route_key == "POST /broker" && output.broker_url == "https://brk123.execute-api.eu-west-1.amazonaws.com/broker"
    error_message = "the broker is POST /broker on its HTTP API, and its URL an output"
  }
}

run "a_pool_without_handoff_gets_the_broker" {
  command = plan

  assert {
    condition     = contains(keys(aws_apigatewayv2_api.http), "broker") && contains(keys(aws_lambda_function.function), "broker")
    error_message = "the broker handoff is the default: a pool without handoff gets the broker function and its HTTP API"
  }
  assert {
    condition     = toset(keys(aws_lambda_permission.http_api)) == toset(["broker"]) && toset(keys(aws_apigatewayv2_route.http)) == toset(["broker"]) && toset(keys(aws_apigatewayv2_stage.http)) == toset(["broker"])
    error_message = "the broker's HTTP API routes POST /broker to the broker, which it may invoke"
  }
  assert {
    condition     = contains(keys(aws_iam_role.function), "broker") && contains(keys(aws_cloudwatch_metric_alarm.function_errors), "broker")
    error_message = "the broker gets its own role and an errors alarm like every function"
  }
}

run "metadata_pools_get_no_broker" {
  command = apply

  variables {
    pools = [
      { name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", handoff = "metadata" },
      { name = "b", labels = ["self-hosted", "b"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", handoff = "metadata" },
    ]
  }

  assert {
    condition     = length(aws_apigatewayv2_api.http) == 0 && !contains(keys(aws_lambda_function.function), "broker")
    error_message = "when every pool says handoff = \"metadata\" there is no broker function or endpoint"
  }
  assert {
    condition     = !contains(keys(aws_iam_role.function), "broker") && length(aws_cloudwatch_log_group.http_api) == 0
    error_message = "when every pool says handoff = \"metadata\" there is no broker role or access log"
  }
  assert {
    condition     = alltrue([for f in aws_lambda_function.function : !contains(keys(f.environment[0].variables), "JITR_BROKER_URL")]) && output.broker_url == null
    error_message = "without a broker no function is given JITR_BROKER_URL, and broker_url is null"
  }
  assert {
    condition     = [for p in jsondecode(aws_lambda_function.function["scaleup"].environment[0].variables.JITR_POOLS) : p.handoff] == ["metadata", "metadata"]
    error_message = "JITR_POOLS carries each pool's handoff = \"metadata\""
  }
}

run "one_metadata_pool_beside_a_default_one_keeps_the_broker" {
  command = apply

  variables {
    pools = [
      { name = "private", labels = ["self-hosted", "private"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", handoff = "metadata" },
      { name = "public", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0b"], image = "ami-0a" },
    ]
  }

  override_resource {
    target = aws_apigatewayv2_api.http["broker"]
    values = { api_endpoint = "https://brk123.execute-api.eu-west-1.amazonaws.com", execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:brk123" }
  }

  assert {
    condition     = contains(keys(aws_lambda_function.function), "broker") && output.broker_url == "https://brk123.execute-api.eu-west-1.amazonaws.com/broker"
    error_message = "a pool without handoff gets the broker even beside a metadata pool"
  }
  assert {
    condition     = [for p in jsondecode(aws_lambda_function.function["scaleup"].environment[0].variables.JITR_POOLS) : p.handoff] == ["metadata", "broker"]
    error_message = "JITR_POOLS carries each pool's resolved handoff, the default written out as \"broker\""
  }
}

run "a_default_pool_may_have_warm_vms" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", warm = 1 }]
  }

  assert {
    condition     = toset(keys(aws_apigatewayv2_api.http)) == toset(["broker"])
    error_message = "a pool without handoff has the broker handoff, which warm VMs need"
  }
}

run "a_pool_s_warm_vms_render" {
  command = apply

  variables {
    pools = [{
      name            = "linux"
      labels          = ["self-hosted", "linux"]
      machine_types   = ["m7i.large"]
      subnet_ids      = ["subnet-0aaaaaaaaaaaaaaaa"]
      image           = "ami-0123456789abcdef0"
      handoff         = "broker"
      warm            = 1
      warm_max_idle_s = 1800
      warm_windows    = [{ days = ["mon", "fri"], start_hour = 8, end_hour = 18, count = 2 }]
    }]
  }

  override_resource {
    target = aws_apigatewayv2_api.http["broker"]
    values = { api_endpoint = "https://brk123.execute-api.eu-west-1.amazonaws.com", execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:brk123" }
  }

  assert {
    condition = jsondecode(aws_lambda_function.function["scaleup"].environment[0].variables.JITR_POOLS)[0] == {
      name         = "linux", labels = ["self-hosted", "linux"], machine_types = ["m7i.large"],
      placements   = ["subnet-0aaaaaaaaaaaaaaaa"], image = "ami-0123456789abcdef0", handoff = "broker",
      warm         = 1, warm_max_idle_s = 1800,
      warm_windows = [{ days = ["mon", "fri"], start_hour = 8, end_hour = 18, count = 2 }]
    }
    error_message = "JITR_POOLS must carry the pool's warm, warm_max_idle_s and warm_windows"
  }
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.function["scaleup"].policy).Statement :
      contains([for d in jsondecode(aws_iam_role_policy.function["scaledown"].policy).Statement : jsonencode(d)], jsonencode(s))
      if contains(["LaunchTaggedRunners", "LaunchWith", "TagAtLaunch", "DescribeForLaunch", "PassRunnerRole"], s.Sid)
    ])
    error_message = "scaledown fills the warm pool: it launches as scaleup does (the same statements: tags, subnets, images, passable roles)"
  }
  assert {
    condition     = contains(one([for s in jsondecode(aws_iam_role_policy.function["broker"].policy).Statement : s.Action if s.Sid == "Store"]), "dynamodb:DeleteItem")
    error_message = "the broker deletes a warm VM's record once its runner has its config"
  }
}

run "a_warm_window_alone_lets_scaledown_launch" {
  command = apply

  variables {
    pools = [{
      name          = "linux"
      labels        = ["self-hosted", "linux"]
      machine_types = ["m7i.large"]
      subnet_ids    = ["subnet-0aaaaaaaaaaaaaaaa"]
      image         = "resolve:ssm:/jitr/runner-image"
      warm_windows  = [{ days = ["mon"], start_hour = 8, end_hour = 18, count = 1 }]
    }]
  }

  override_resource {
    target = aws_apigatewayv2_api.http["broker"]
    values = { api_endpoint = "https://brk123.execute-api.eu-west-1.amazonaws.com", execution_arn = "arn:aws:execute-api:eu-west-1:123456789012:brk123" }
  }

  assert {
    condition = length(setsubtract(
      ["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole", "ssm:GetParameters"],
      flatten([for s in jsondecode(aws_iam_role_policy.function["scaledown"].policy).Statement : s.Action]),
    )) == 0
    error_message = "a window's count is warm VMs too: scaledown launches them, resolving the pool's resolve:ssm: image"
  }
}

run "warm_vms_without_the_broker_are_refused" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", handoff = "metadata", warm = 1 }]
  }
  expect_failures = [var.pools]
}

run "an_unknown_handoff_is_refused" {
  command = plan
  variables {
    pools = [{ name = "a", labels = ["self-hosted"], machine_types = ["m7i.large"], subnet_ids = ["subnet-0a"], image = "ami-0a", handoff = "ssm" }]
  }
  expect_failures = [var.pools]
}
