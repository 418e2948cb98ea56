# What invokes the function: the schedule (everything is evaluated) and the state changes the
# watchdog handles (only the checks they concern run, at once). Rule, target and permission
# share one key each, so every permission is scoped to its own rule's ARN.

locals {
  rules = {
    schedule = {
      description = "Evaluate every SLO and check"
      schedule    = var.schedule
      pattern     = null
    }
    asg = {
      description = "Auto Scaling launched or terminated an instance"
      schedule    = null
      pattern = jsonencode({
        source = ["aws.autoscaling"]
        "detail-type" = [
          "EC2 Instance Launch Successful",
          "EC2 Instance Launch Unsuccessful",
          "EC2 Instance Terminate Successful",
          "EC2 Instance Terminate Unsuccessful",
        ]
      })
    }
    ec2 = {
      description = "An EC2 instance changed state"
      schedule    = null
      pattern = jsonencode({
        source        = ["aws.ec2"]
        "detail-type" = ["EC2 Instance State-change Notification"]
      })
    }
    alarm = {
      description = "A CloudWatch alarm changed state"
      schedule    = null
      pattern = jsonencode({
        source        = ["aws.cloudwatch"]
        "detail-type" = ["CloudWatch Alarm State Change"]
      })
    }
    rds = {
      description = "An RDS instance or cluster event"
      schedule    = null
      pattern = jsonencode({
        source        = ["aws.rds"]
        "detail-type" = ["RDS DB Instance Event", "RDS DB Cluster Event"]
      })
    }
  }
}

resource "aws_cloudwatch_event_rule" "watchdog" {
  for_each            = local.rules
  name                = "${var.function_name}-${each.key}"
  description         = "${var.function_name}: ${each.value.description}"
  schedule_expression = each.value.schedule
  event_pattern       = each.value.pattern
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "watchdog" {
  for_each  = aws_cloudwatch_event_rule.watchdog
  rule      = each.value.name
  target_id = "watchdog"
  arn       = aws_lambda_function.watchdog.arn
}

resource "aws_lambda_permission" "watchdog" {
  for_each      = aws_cloudwatch_event_rule.watchdog
  statement_id  = "events-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.watchdog.function_name
  principal     = "events.amazonaws.com"
  source_arn    = each.value.arn
}
