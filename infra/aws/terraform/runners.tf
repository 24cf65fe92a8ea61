# The runner VMs' side: a role and instance profile with nothing by default but what the startup
# script uses, and a security group with no ingress and egress only for HTTPS, HTTP and DNS.
#
# IMDSv2: jitr launches every VM with MetadataOptions HttpTokens=required itself (and
# InstanceInitiatedShutdownBehavior=terminate), so no launch template is needed for it. A pool's
# own launch_template may add settings; jitr's metadata options still replace the template's.

data "aws_iam_policy_document" "runner_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner" {
  name                 = "${var.name_prefix}-runner"
  description          = "jitr runner VMs (${var.name_prefix}): every job on a runner has these permissions."
  assume_role_policy   = data.aws_iam_policy_document.runner_assume.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_instance_profile" "runner" {
  name = "${var.name_prefix}-runner"
  role = aws_iam_role.runner.name
  tags = var.tags
}

locals {
  runner_statements = concat(
    var.runner_log_shipping ? [{
      # The CloudWatch agent (started by the startup script) writes /jitr/<pool>, streams <runner>/startup and <runner>/runner-diag.
      Sid      = "ShipRunnerLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"]
      Resource = ["${local.arn_prefix}:logs:${local.region}:${local.account}:log-group:/jitr/*"]
    }] : [],
    [{
      # The teardown's exit report (did the runner run a job?): one tag, on this instance only.
      Sid      = "TagSelfWithExitReport"
      Effect   = "Allow"
      Action   = ["ec2:CreateTags"]
      Resource = ["${local.ec2_arn}:instance/*"]
      Condition = {
        StringEquals                = { "aws:ARN" = "$${ec2:SourceInstanceARN}" }
        "ForAllValues:StringEquals" = { "aws:TagKeys" = ["jitr-runner-exit"] }
      }
    }],
    var.runner_self_terminate ? [{
      # The teardown's `aws ec2 terminate-instances` on itself: this instance only.
      Sid       = "TerminateSelf"
      Effect    = "Allow"
      Action    = ["ec2:TerminateInstances"]
      Resource  = ["${local.ec2_arn}:instance/*"]
      Condition = { StringEquals = { "aws:ARN" = "$${ec2:SourceInstanceARN}" } }
    }] : [],
  )
}

resource "aws_iam_role_policy" "runner" {
  count = length(local.runner_statements) > 0 ? 1 : 0
  name  = "jitr-runner"
  role  = aws_iam_role.runner.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.runner_statements
  })
}

resource "aws_iam_role_policy_attachment" "runner" {
  for_each   = toset(var.runner_role_policy_arns)
  role       = aws_iam_role.runner.name
  policy_arn = each.value
}

# The log group of each pool that ships logs, so its retention is set (the agent would create it without one).
resource "aws_cloudwatch_log_group" "runner" {
  for_each          = var.runner_log_shipping ? toset([for p in var.pools : p.name if p.log_shipping != false]) : toset([])
  name              = "/jitr/${each.value}"
  retention_in_days = var.runner_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags

  #checkov:skip=CKV_AWS_338:Runner boot logs are for diagnosing failed boots; retention is the runner_log_retention_days variable.
  #checkov:skip=CKV_AWS_158:Encrypted with CloudWatch's own key unless kms_key_arn names a customer-managed key.
}

resource "aws_security_group" "runners" {
  name                   = "${var.name_prefix}-runners"
  description            = "jitr runner VMs (${var.name_prefix}): no ingress; egress for HTTPS, HTTP and DNS"
  vpc_id                 = var.vpc_id
  revoke_rules_on_delete = true
  tags                   = merge(var.tags, { Name = "${var.name_prefix}-runners" })

  egress {
    description = "HTTPS: GitHub, package registries, AWS APIs"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = var.runner_egress_cidr_blocks
  }
  egress {
    description = "HTTP: package mirrors that still serve it"
    protocol    = "tcp"
    from_port   = 80
    to_port     = 80
    cidr_blocks = var.runner_egress_cidr_blocks
  }
  egress {
    description = "DNS over UDP"
    protocol    = "udp"
    from_port   = 53
    to_port     = 53
    cidr_blocks = var.runner_egress_cidr_blocks
  }
  egress {
    description = "DNS over TCP"
    protocol    = "tcp"
    from_port   = 53
    to_port     = 53
    cidr_blocks = var.runner_egress_cidr_blocks
  }

  #checkov:skip=CKV2_AWS_5:Attached at launch time by jitr (JITR_AWS_SECURITY_GROUP_IDS), not by a resource here.
  #checkov:skip=CKV_AWS_382:Runner jobs fetch code and packages from anywhere on 443/80; narrow runner_egress_cidr_blocks where a proxy or fixed ranges exist.
}
