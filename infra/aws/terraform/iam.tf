# One role per function, allowed only what that function calls, on what it touches.
# The table in README.md says what each statement is for.

locals {
  arn_prefix = "arn:${local.partition}"
  ec2_arn    = "${local.arn_prefix}:ec2:${local.region}:${local.account}"

  table_arns = [aws_dynamodb_table.state.arn, "${aws_dynamodb_table.state.arn}/index/by_state"]

  pool_images  = distinct([for p in var.pools : p.image])
  ssm_images   = [for i in local.pool_images : trimprefix(i, "resolve:ssm:") if startswith(i, "resolve:ssm:")]
  ami_images   = [for i in local.pool_images : i if startswith(i, "ami-")]
  pool_subnets = distinct(flatten([for p in var.pools : p.subnet_ids]))
  pool_groups  = distinct(concat(local.runner_security_group_ids, flatten([for p in var.pools : coalesce(p.security_group_ids, [])])))
  templates    = [for p in var.pools : p.launch_template if p.launch_template != null]
  key_pairs    = [for p in var.pools : p.key_name if p.key_name != null]
  pass_roles   = concat([aws_iam_role.runner.arn], var.additional_passable_role_arns)

  # Pools that keep warm VMs (jitr's Pool.keeps_warm: warm, or a window's count, above 0). JITR_POOLS
  # comes from var.pools alone (jitr_settings may not set it), so this is known at plan time: the
  # launch and warm-record grants below are given only to deployments that use them.
  warm_pools = anytrue([
    for p in var.pools : coalesce(p.warm, 0) > 0 || anytrue([for w in coalesce(p.warm_windows, []) : w.count > 0])
  ])

  statement = {
    logs = {
      for kind, f in local.functions : kind => {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.function[kind].arn}:*"]
      }
    }
    webhook_secret = {
      Sid = "ReadWebhookSecret", Effect = "Allow", Action = ["secretsmanager:GetSecretValue"], Resource = [local.webhook_secret_arn]
    }
    app_key = {
      Sid = "ReadAppKey", Effect = "Allow", Action = ["secretsmanager:GetSecretValue"], Resource = [local.app_key_secret_arn]
    }
    describe = {
      # EC2 does not scope describe calls to resources.
      Sid = "DescribeInstances", Effect = "Allow", Action = ["ec2:DescribeInstances"], Resource = ["*"]
    }
    terminate = {
      Sid      = "TerminateOwnRunners"
      Effect   = "Allow"
      Action   = ["ec2:TerminateInstances"]
      Resource = ["${local.ec2_arn}:instance/*"]
      Condition = {
        StringEquals = {
          "ec2:ResourceTag/managed-by"                  = "jitr"
          "ec2:ResourceTag/${local.deployment_tag_key}" = var.name_prefix
        }
      }
    }
  }

  # The state store, by what each function reads and writes. Transactions (claims, counters) are
  # authorised by the actions of the items they hold. Every function that retires a runner queries
  # the by_state index, as a runner leaving flight sends on the oldest job waiting for the cap it
  # frees, and moves the cap counters (UpdateItem): scaleup retires the runner of a job cancelled
  # while it launched, the broker one whose repository GitHub will not serve. With warm pools
  # scaleup also reads the waiting warm VMs (they count against the caps), and the broker deletes
  # a warm VM's record once it has handed the VM's runner its config.
  store = {
    for kind, actions in {
      scaleup    = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
      lifecycle  = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"]
      scaledown  = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
      rebalancer = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:Query"]
      broker     = concat(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"], local.warm_pools ? ["dynamodb:DeleteItem"] : [])
      } : kind => {
      Sid      = "Store"
      Effect   = "Allow"
      Action   = actions
      Resource = contains(actions, "dynamodb:Query") ? local.table_arns : [aws_dynamodb_table.state.arn]
    }
  }

  # The queues each function sends to. Besides requeueing: scaledown hands lifecycle the event of a
  # lost webhook (a runner that took another job) and dead-letters a job whose runners keep exiting
  # without it; the broker dead-letters a job whose repository GitHub will not serve, and, like
  # every function retiring a runner, sends on a job waiting for the freed cap.
  sqs_send = {
    for kind, queues in {
      webhook    = [aws_sqs_queue.main["jobs"].arn, aws_sqs_queue.main["lifecycle"].arn]
      scaleup    = [aws_sqs_queue.main["jobs"].arn, aws_sqs_queue.dead_letter["jobs"].arn]
      lifecycle  = [aws_sqs_queue.main["jobs"].arn, aws_sqs_queue.main["lifecycle"].arn, aws_sqs_queue.dead_letter["lifecycle"].arn]
      scaledown  = [aws_sqs_queue.main["jobs"].arn, aws_sqs_queue.main["lifecycle"].arn, aws_sqs_queue.dead_letter["jobs"].arn]
      rebalancer = [aws_sqs_queue.main["jobs"].arn]
      broker     = [aws_sqs_queue.main["jobs"].arn, aws_sqs_queue.dead_letter["jobs"].arn]
    } : kind => { Sid = "SendMessages", Effect = "Allow", Action = ["sqs:SendMessage"], Resource = queues }
  }

  # What Lambda's event source mapping calls on the function's behalf.
  sqs_consume = {
    for queue, q in local.queues : q.consumer => {
      Sid      = "EventSourceMapping"
      Effect   = "Allow"
      Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      Resource = [aws_sqs_queue.main[queue].arn]
    }
  }

  kms = var.kms_key_arn == null ? [] : [{
    Sid = "UseKey", Effect = "Allow", Action = ["kms:Decrypt", "kms:GenerateDataKey"], Resource = [var.kms_key_arn]
  }]

  launch = concat(
    [
      {
        Sid      = "LaunchTaggedRunners"
        Effect   = "Allow"
        Action   = ["ec2:RunInstances"]
        Resource = ["${local.ec2_arn}:instance/*", "${local.ec2_arn}:volume/*"]
        Condition = {
          StringEquals = {
            "aws:RequestTag/managed-by"                  = "jitr"
            "aws:RequestTag/${local.deployment_tag_key}" = var.name_prefix
          }
        }
      },
      {
        Sid    = "LaunchWith"
        Effect = "Allow"
        Action = ["ec2:RunInstances"]
        Resource = concat(
          ["${local.ec2_arn}:network-interface/*", "${local.ec2_arn}:spot-instances-request/*"],
          [for s in local.pool_subnets : "${local.ec2_arn}:subnet/${s}"],
          [for g in local.pool_groups : "${local.ec2_arn}:security-group/${g}"],
          length(local.ssm_images) > 0 ? ["${local.arn_prefix}:ec2:${local.region}::image/*"] : [for i in local.ami_images : "${local.arn_prefix}:ec2:${local.region}::image/${i}"],
          length(local.templates) > 0 ? ["${local.ec2_arn}:launch-template/*"] : [],
          [for k in local.key_pairs : "${local.ec2_arn}:key-pair/${k}"],
        )
      },
      {
        Sid      = "TagAtLaunch"
        Effect   = "Allow"
        Action   = ["ec2:CreateTags"]
        Resource = ["${local.ec2_arn}:instance/*", "${local.ec2_arn}:volume/*"]
        Condition = {
          StringEquals = {
            "ec2:CreateAction"                           = "RunInstances"
            "aws:RequestTag/managed-by"                  = "jitr"
            "aws:RequestTag/${local.deployment_tag_key}" = var.name_prefix
          }
        }
      },
      {
        # Finding a launch by its client token, and an image's root device (EC2 does not scope describe calls).
        Sid = "DescribeForLaunch", Effect = "Allow", Action = ["ec2:DescribeInstances", "ec2:DescribeImages"], Resource = ["*"]
      },
      {
        Sid       = "PassRunnerRole"
        Effect    = "Allow"
        Action    = ["iam:PassRole"]
        Resource  = local.pass_roles
        Condition = { StringEquals = { "iam:PassedToService" = "ec2.amazonaws.com" } }
      },
    ],
    length(local.ssm_images) == 0 ? [] : [{
      Sid    = "ResolveImageParameters"
      Effect = "Allow"
      Action = ["ssm:GetParameters"]
      # AWS's public parameters (names under /aws/) name no account in their ARNs.
      Resource = [
        for n in local.ssm_images :
        "${local.arn_prefix}:ssm:${local.region}:${startswith(trimprefix(n, "/"), "aws/") ? "" : local.account}:parameter/${trimprefix(n, "/")}"
      ]
    }],
  )

  # scaledown launches too where pools keep warm VMs: its pass fills them (the same launch as
  # scaleup's, with the same tags, subnets, images and passable roles). Scaleup terminates the VM
  # it launched for a job cancelled meanwhile, the broker that of a runner it cannot serve.
  function_statements = {
    broker     = [local.statement.app_key, local.store.broker, local.sqs_send.broker, local.statement.describe, local.statement.terminate]
    webhook    = [local.statement.webhook_secret, local.sqs_send.webhook]
    scaleup    = concat([local.statement.app_key, local.store.scaleup, local.sqs_consume.scaleup, local.sqs_send.scaleup, local.statement.terminate], local.launch)
    lifecycle  = [local.statement.app_key, local.store.lifecycle, local.sqs_consume.lifecycle, local.sqs_send.lifecycle, local.statement.describe, local.statement.terminate]
    scaledown  = concat([local.statement.app_key, local.store.scaledown, local.sqs_send.scaledown, local.statement.describe, local.statement.terminate], [for s in local.launch : s if local.warm_pools])
    rebalancer = [local.statement.app_key, local.store.rebalancer, local.sqs_send.rebalancer]
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each             = local.functions
  name                 = "${var.name_prefix}-${each.key}"
  description          = "jitr ${each.key} function (${var.name_prefix})"
  assume_role_policy   = data.aws_iam_policy_document.lambda_assume.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = "jitr-${each.key}"
  role     = aws_iam_role.function[each.key].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = concat([local.statement.logs[each.key]], local.function_statements[each.key], local.kms)
  })
}
