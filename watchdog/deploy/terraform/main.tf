# vigil-watchdog as a Lambda function: the function, its log group, its role (the policy
# generated from the spec by `vigil-watchdog iam-policy`, plus writing its own logs) and the
# KMS key that encrypts its topic, secrets, logs, state table and environment.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  # Named here rather than read from the resource: the KMS key policy needs it before the
  # log group exists.
  log_group_name = "/aws/lambda/${var.function_name}"
  log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"
  # The generated policy is a template: its ARNs carry ${partition}, ${region}, ${account_id}.
  spec_policy = templatefile(coalesce(var.policy_template, "${path.module}/policy.json"), {
    partition  = local.partition
    region     = local.region
    account_id = local.account_id
  })
}

resource "aws_kms_key" "watchdog" {
  description         = "${var.function_name}: pages topic, secrets, logs, alert state, environment"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Key administration stays with the account's IAM policies.
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "LogsEncryptTheFunctionLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = { ArnEquals = { "kms:EncryptionContext:aws:logs:arn" = local.log_group_arn } }
      },
      {
        # Alarms publish to the encrypted topic.
        Sid       = "AlarmsPublishToTheTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
      {
        # The state table is encrypted with this key; the function reaches it only through
        # DynamoDB.
        Sid       = "FunctionUsesStateTableViaDynamoDB"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.watchdog.arn }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "dynamodb.${local.region}.amazonaws.com" } }
      },
    ]
  })
  tags = var.tags
}

resource "aws_kms_alias" "watchdog" {
  name          = "alias/${var.function_name}"
  target_key_id = aws_kms_key.watchdog.key_id
}

resource "aws_cloudwatch_log_group" "watchdog" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.watchdog.arn
  tags              = var.tags
}

resource "aws_iam_role" "watchdog" {
  name = var.function_name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
  tags = var.tags
}

# Exactly what the spec needs (vigil-watchdog iam-policy; tests/deploy.rs proves it against
# the calls the watchdog makes).
resource "aws_iam_role_policy" "spec" {
  name   = "spec"
  role   = aws_iam_role.watchdog.id
  policy = local.spec_policy
}

# Its own log group only (instead of AWSLambdaBasicExecutionRole's logs on every group).
resource "aws_iam_role_policy" "logs" {
  name = "logs"
  role = aws_iam_role.watchdog.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.watchdog.arn}:*"
    }]
  })
}

resource "aws_lambda_function" "watchdog" {
  # checkov:skip=CKV_AWS_117:The watchdog calls public AWS APIs and Slack; a VPC would add a NAT gateway and nothing to protect.
  # checkov:skip=CKV_AWS_116:Invocations are EventBridge events; a failed one is caught by the errors alarm and the next schedule re-evaluates everything, so a DLQ of stale events has no use.
  # checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the shop does not run; the zip is built and hashed by CI (source_code_hash).
  # checkov:skip=CKV_AWS_50:The watchdog emits no traces; its health is the heartbeat and errors alarms below.
  function_name                  = var.function_name
  role                           = aws_iam_role.watchdog.arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  filename                       = var.package_path
  source_code_hash               = filebase64sha256(var.package_path)
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = aws_kms_key.watchdog.arn
  environment {
    variables = {
      # The spec ships beside bootstrap in the zip.
      VIGIL_SPEC    = "/var/task/alerts"
      VIGIL_DRY_RUN = tostring(var.dry_run)
    }
  }
  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.watchdog.name
  }
  tags       = var.tags
  depends_on = [aws_iam_role_policy.logs, aws_iam_role_policy.spec]
}
