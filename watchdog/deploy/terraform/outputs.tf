output "function_name" {
  description = "The Lambda function's name."
  value       = aws_lambda_function.watchdog.function_name
}

output "function_arn" {
  description = "The Lambda function's ARN."
  value       = aws_lambda_function.watchdog.arn
}

output "role_arn" {
  description = "The execution role (the generated spec policy and its own logs)."
  value       = aws_iam_role.watchdog.arn
}

output "log_group_name" {
  description = "The function's log group."
  value       = aws_cloudwatch_log_group.watchdog.name
}

output "state_table_name" {
  description = "The alert-state table (settings.state.table)."
  value       = aws_dynamodb_table.state.name
}

output "topic_arn" {
  description = "The encrypted SNS topic the dead-man alarms page; use it as an sns receiver's topic_arn."
  value       = aws_sns_topic.pages.arn
}

output "findings_bus_arn" {
  description = "The custom EventBridge bus for findings (settings.notify.event_bus)."
  value       = aws_cloudwatch_event_bus.findings.arn
}

output "kms_key_arn" {
  description = "The KMS key for the topic, secrets, logs, table and environment."
  value       = aws_kms_key.watchdog.arn
}

output "secret_parameter_arns" {
  description = "ARNs of the secret parameters, by name."
  value       = { for name, p in aws_ssm_parameter.secret : name => p.arn }
}

output "rule_arns" {
  description = "EventBridge rules invoking the function, by key (schedule, asg, ec2, alarm, rds)."
  value       = { for key, r in aws_cloudwatch_event_rule.watchdog : key => r.arn }
}

output "alarm_arns" {
  description = "The dead-man alarms: heartbeat and errors/throttles."
  value = {
    heartbeat = aws_cloudwatch_metric_alarm.heartbeat.arn
    errors    = aws_cloudwatch_metric_alarm.errors.arn
  }
}
