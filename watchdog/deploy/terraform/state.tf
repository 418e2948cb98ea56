# What the watchdog reads and writes besides the AWS APIs it checks: alert state, the pages
# topic, the findings bus, and the names of its secrets.

resource "aws_dynamodb_table" "state" {
  name         = var.state_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "fingerprint"
  attribute {
    name = "fingerprint"
    type = "S"
  }
  # Resolved incidents expire (settings.state.keep_resolved_for).
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.watchdog.arn
  }
  deletion_protection_enabled = true
  tags                        = var.tags
}

resource "aws_sns_topic" "pages" {
  name              = var.topic_name
  kms_master_key_id = aws_kms_key.watchdog.id
  tags              = var.tags
}

resource "aws_cloudwatch_event_bus" "findings" {
  name = var.findings_bus_name
  tags = var.tags
}

# Names only: the values (webhook URLs, bot tokens) are set outside Terraform and never enter
# its state after the placeholder.
resource "aws_ssm_parameter" "secret" {
  for_each    = toset(var.secret_parameter_names)
  name        = each.value
  description = "${var.function_name} secret; set its value with aws ssm put-parameter --overwrite"
  type        = "SecureString"
  key_id      = aws_kms_key.watchdog.arn
  value       = "set-outside-terraform"
  tags        = var.tags
  lifecycle {
    ignore_changes = [value]
  }
}
