# The shop's watchdog: one root module per environment (the shop keeps infrastructure in its
# own repository, one branch per environment). Build the zip first:
#   scripts/package-lambda.sh --out dist/vigil-watchdog.zip
# and regenerate the policy whenever alerts/ changes:
#   vigil-watchdog iam-policy --spec alerts/ > watchdog/deploy/terraform/policy.json

terraform {
  required_version = ">= 1.7.0, < 2.0.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

variable "region" {
  description = "Region the shop runs in."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Environment (branch) name, part of every resource name."
  type        = string
  default     = "production"
}

variable "package_path" {
  description = "The zip made by scripts/package-lambda.sh."
  type        = string
  default     = "../../../../../dist/vigil-watchdog.zip"
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { service = "vigil-watchdog", environment = var.environment }
  }
}

module "watchdog" {
  source = "../.."

  package_path = var.package_path
  # The spec (alerts/settings.yaml) names the table vigil-alert-state and the default
  # function name; keep these equal to it.
  function_name    = "vigil-watchdog"
  state_table_name = "vigil-alert-state"
  schedule         = "rate(1 minute)"
  timeout          = 60
  memory_size      = 128

  reserved_concurrency   = 1
  secret_parameter_names = ["/vigil/slack/webhook"]
  tags                   = { team = "platform" }
}

output "function_arn" {
  description = "The watchdog function."
  value       = module.watchdog.function_arn
}

output "topic_arn" {
  description = "Subscribe the on-call rotation here; name it in an sns receiver of the spec."
  value       = module.watchdog.topic_arn
}

output "alarm_arns" {
  description = "The watchdog's dead-man alarms."
  value       = module.watchdog.alarm_arns
}
