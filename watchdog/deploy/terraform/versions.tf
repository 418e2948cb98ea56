terraform {
  # mock_provider in the module's tests needs 1.7; `terraform test` itself 1.6.
  required_version = ">= 1.7.0, < 2.0.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}
