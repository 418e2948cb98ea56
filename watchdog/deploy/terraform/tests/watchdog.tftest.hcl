# `terraform test` for users with Terraform >= 1.7 (not run in this repository's CI: Terraform
# cannot be installed on its machines; tests/wiring.py and checkov check the module there).
# Plans against a mocked AWS provider: no credentials, no account, nothing created.

mock_provider "aws" {
  override_data {
    target = data.aws_caller_identity.current
    values = { account_id = "123456789012" }
  }
  override_data {
    target = data.aws_region.current
    values = { name = "eu-west-1" }
  }
  override_data {
    target = data.aws_partition.current
    values = { partition = "aws" }
  }
}

variables {
  package_path = "tests/fixture.zip"
}

run "defaults" {
  command = plan

  assert {
    condition     = aws_lambda_function.watchdog.runtime == "provided.al2023" && aws_lambda_function.watchdog.handler == "bootstrap"
    error_message = "the function runs bootstrap on provided.al2023"
  }
  assert {
    condition     = aws_lambda_function.watchdog.memory_size == 128 && aws_lambda_function.watchdog.reserved_concurrent_executions == 1
    error_message = "128 MB and reserved concurrency 1 by default"
  }
  assert {
    condition     = aws_lambda_function.watchdog.environment[0].variables["VIGIL_SPEC"] == "/var/task/alerts"
    error_message = "the bundled spec is found through VIGIL_SPEC"
  }
  assert {
    condition     = aws_cloudwatch_event_rule.watchdog["schedule"].schedule_expression == "rate(1 minute)"
    error_message = "the schedule is rate(1 minute) by default"
  }
  assert {
    condition     = length(aws_lambda_permission.watchdog) == 5 && alltrue([for k, p in aws_lambda_permission.watchdog : p.principal == "events.amazonaws.com"])
    error_message = "one EventBridge permission per rule"
  }
  assert {
    condition     = aws_dynamodb_table.state.hash_key == "fingerprint" && aws_dynamodb_table.state.ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.state.point_in_time_recovery[0].enabled
    error_message = "state table: fingerprint key, TTL on expires_at, PITR"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.heartbeat.treat_missing_data == "breaching" && aws_cloudwatch_metric_alarm.errors.treat_missing_data == "breaching"
    error_message = "the dead-man alarms treat missing data as breaching"
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.spec.policy).Version == "2012-10-17"
    error_message = "the generated policy renders into a policy document"
  }
}

run "schedule_is_validated" {
  command = plan
  variables {
    schedule = "every minute"
  }
  expect_failures = [var.schedule]
}

run "reserved_concurrency_at_least_one" {
  command = plan
  variables {
    reserved_concurrency = 0
  }
  expect_failures = [var.reserved_concurrency]
}
