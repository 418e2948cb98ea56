# The watchdog's own dead-man switch: it must never fail silently. Both alarms treat missing
# data as breaching: no heartbeat, or no invocation at all, is the failure they exist for.

resource "aws_cloudwatch_metric_alarm" "heartbeat" {
  alarm_name          = "${var.function_name}-heartbeat"
  alarm_description   = "${var.function_name} put no heartbeat for ${var.heartbeat_period}s: evaluations stopped or fail before the end."
  namespace           = "Vigil/Watchdog"
  metric_name         = "heartbeat"
  statistic           = "Sum"
  period              = var.heartbeat_period
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.pages.arn]
  ok_actions          = [aws_sns_topic.pages.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${var.function_name}-errors-throttles"
  alarm_description   = "${var.function_name} failed or was throttled (or was not invoked at all)."
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.pages.arn]
  ok_actions          = [aws_sns_topic.pages.arn]
  metric_query {
    id          = "failed"
    # Errors is published with every invocation (0 when it succeeded); Throttles only when
    # there were some, so only its gaps are filled.
    expression  = "errors + FILL(throttles, 0)"
    label       = "errors + throttles"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.watchdog.function_name }
      period      = var.heartbeat_period
      stat        = "Sum"
    }
  }
  metric_query {
    id = "throttles"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Throttles"
      dimensions  = { FunctionName = aws_lambda_function.watchdog.function_name }
      period      = var.heartbeat_period
      stat        = "Sum"
    }
  }
  tags = var.tags
}
