"""Checks the watchdog's Terraform module without Terraform: parses every .tf file with
python-hcl2 and checks the wiring that a plan cannot show wrong until it is deployed.

Run by watchdog/tests/deploy.rs (so `cargo nextest` runs it): python wiring.py MODULE_DIR.
Prints "wiring ok" or exits non-zero with every problem found.
"""

import json
import re
import sys
from pathlib import Path

import hcl2

module = Path(sys.argv[1]).resolve()
repo = module.parents[2]
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def unquote(value):
    """python-hcl2 keeps string literals quoted ('"x"'); expressions are '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(directory):
    blocks = {"resource": {}, "variable": {}, "output": {}, "locals": {}, "data": {}, "module": {}, "terraform": []}
    for path in sorted(directory.glob("*.tf")):
        parsed = hcl2.load(path.open())
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        blocks[kind][(unquote(rtype), unquote(name))] = body
        for kind in ("variable", "output", "module"):
            for entry in parsed.get(kind, []):
                for name, body in entry.items():
                    blocks[kind][unquote(name)] = body
        for entry in parsed.get("locals", []):
            blocks["locals"].update({k: v for k, v in entry.items() if not k.startswith("__")})
        blocks["terraform"].extend(parsed.get("terraform", []))
    return blocks


tf = load(module)
res = tf["resource"]


def resources(rtype):
    return {name: body for (t, name), body in res.items() if t == rtype}


# One function, and everything that invokes it is one of the module's rules.
functions = resources("aws_lambda_function")
check(list(functions) == ["watchdog"], f"exactly one function, named watchdog: {list(functions)}")
fn = functions.get("watchdog", {})
check(unquote(fn.get("runtime")) == "provided.al2023", "runtime provided.al2023")
check(unquote(fn.get("handler")) == "bootstrap", "handler bootstrap")
check(fn.get("role") == "${aws_iam_role.watchdog.arn}", "the function runs as the module's role")
check(fn.get("reserved_concurrent_executions") == "${var.reserved_concurrency}", "reserved concurrency from its variable")
env = fn.get("environment", [{}])[0].get("variables", {})
check(unquote(env.get("VIGIL_SPEC")) == "/var/task/alerts", "VIGIL_SPEC points at the bundled spec")
check(fn.get("logging_config", [{}])[0].get("log_group") == "${aws_cloudwatch_log_group.watchdog.name}", "logs go to the module's log group")
check(tf["variable"].get("memory_size", {}).get("default") == 128, "memory 128 MB by default")

# Rules: the schedule and each state change the watchdog handles (watchdog/src/lambda/events.rs).
handled = {
    "asg": ("aws.autoscaling", ["EC2 Instance Launch Successful", "EC2 Instance Launch Unsuccessful",
                                "EC2 Instance Terminate Successful", "EC2 Instance Terminate Unsuccessful"]),
    "ec2": ("aws.ec2", ["EC2 Instance State-change Notification"]),
    "alarm": ("aws.cloudwatch", ["CloudWatch Alarm State Change"]),
    "rds": ("aws.rds", ["RDS DB Instance Event", "RDS DB Cluster Event"]),
}
events_rs = (repo / "watchdog/src/lambda/events.rs").read_text()
rules = tf["locals"].get("rules", {})
check(set(rules) == {"schedule", *handled}, f"rules are schedule + {sorted(handled)}: {sorted(rules)}")
check(rules.get("schedule", {}).get("schedule") == "${var.schedule}", "the schedule rule uses var.schedule")
check(tf["variable"].get("schedule", {}).get("default") == '"rate(1 minute)"' or
      unquote(tf["variable"].get("schedule", {}).get("default")) == "rate(1 minute)", "rate(1 minute) by default")
for key, (source, detail_types) in handled.items():
    pattern = rules.get(key, {}).get("pattern") or ""
    check(f'\\"{source}\\"' in json.dumps(pattern), f"rule {key} matches source {source}")
    check(f'"{source}"' in events_rs, f"events.rs handles {source}")
    for d in detail_types:
        check(f'\\"{d}\\"' in json.dumps(pattern), f"rule {key} matches detail-type {d}")
        check(f'"{d}"' in events_rs, f"events.rs handles detail-type {d}")
rule = resources("aws_cloudwatch_event_rule").get("watchdog", {})
check(rule.get("for_each") == "${local.rules}", "one rule per entry of local.rules")
check(rule.get("schedule_expression") == "${each.value.schedule}", "rules take their schedule")
check(rule.get("event_pattern") == "${each.value.pattern}", "rules take their pattern")
check(set(resources("aws_cloudwatch_event_rule")) == {"watchdog"}, "no other rules")

# Every rule targets the function; every permission is scoped to its own rule's ARN.
targets = resources("aws_cloudwatch_event_target")
check(set(targets) == {"watchdog"}, f"one target set: {list(targets)}")
t = targets.get("watchdog", {})
check(t.get("for_each") == "${aws_cloudwatch_event_rule.watchdog}", "one target per rule")
check(t.get("rule") == "${each.value.name}", "each target is on its own rule")
check(t.get("arn") == "${aws_lambda_function.watchdog.arn}", "every rule targets the function")
permissions = resources("aws_lambda_permission")
check(set(permissions) == {"watchdog"}, f"one permission set: {list(permissions)}")
p = permissions.get("watchdog", {})
check(p.get("for_each") == "${aws_cloudwatch_event_rule.watchdog}", "one permission per rule")
check(p.get("source_arn") == "${each.value.arn}", "each permission's source ARN is its own rule's")
check(unquote(p.get("principal")) == "events.amazonaws.com", "permissions are for EventBridge")
check(unquote(p.get("action")) == "lambda:InvokeFunction", "permissions allow only InvokeFunction")
check(p.get("function_name") == "${aws_lambda_function.watchdog.function_name}", "permissions are on the function")

# The role: the generated policy document, plus its own logs; nothing attached from outside.
policies = resources("aws_iam_role_policy")
check(set(policies) == {"spec", "logs"}, f"role policies are spec and logs: {sorted(policies)}")
check(policies.get("spec", {}).get("policy") == "${local.spec_policy}", "the spec policy is the generated one")
spec_policy = tf["locals"].get("spec_policy", "")
check("templatefile(" in spec_policy and "policy.json" in spec_policy, f"spec_policy renders policy.json: {spec_policy}")
check(not resources("aws_iam_role_policy_attachment") and not resources("aws_iam_policy_attachment"),
      "no managed policies attached to the role")
template = (module / "policy.json").read_text()
rendered = template.replace("${partition}", "aws").replace("${region}", "eu-west-1").replace("${account_id}", "123456789012")
check("${" not in rendered, "policy.json uses only the partition, region and account_id placeholders")
try:
    document = json.loads(rendered)
    check(document.get("Version") == "2012-10-17", "policy.json is a policy document")
except json.JSONDecodeError as e:
    problems.append(f"policy.json does not render to JSON: {e}")
logs = json.dumps(policies.get("logs", {}).get("policy", ""))
check("aws_cloudwatch_log_group.watchdog.arn" in logs and "logs:*" not in logs, "logs policy is on its own log group only")

# The state table.
table = resources("aws_dynamodb_table").get("state", {})
check(unquote(table.get("hash_key")) == "fingerprint", "state table keyed by fingerprint")
check(any(unquote(a.get("name")) == "fingerprint" and unquote(a.get("type")) == "S" for a in table.get("attribute", [])),
      "fingerprint is a string")
ttl = table.get("ttl", [{}])[0]
check(unquote(ttl.get("attribute_name")) == "expires_at" and ttl.get("enabled") is True, "TTL on expires_at")
check(table.get("point_in_time_recovery", [{}])[0].get("enabled") is True, "point-in-time recovery")
check(table.get("server_side_encryption", [{}])[0].get("enabled") is True, "encryption at rest")
state_rs = (repo / "watchdog/src/state/mod.rs").read_text()
check('"expires_at"' in state_rs and '"fingerprint"' in state_rs, "the watchdog writes fingerprint and expires_at")

# The topic is encrypted; the bus exists; secrets are SecureStrings whose values stay outside.
topic = resources("aws_sns_topic").get("pages", {})
check(topic.get("kms_master_key_id", "").startswith("${aws_kms_key."), "the topic is KMS-encrypted")
check("findings" in resources("aws_cloudwatch_event_bus"), "the findings bus")
secret = resources("aws_ssm_parameter").get("secret", {})
check(unquote(secret.get("type")) == "SecureString", "secrets are SecureStrings")
check("value" in json.dumps(secret.get("lifecycle", [{}])[0].get("ignore_changes", [])), "secret values are set outside Terraform")

# The dead-man switch: both alarms page the topic and treat missing data as breaching.
alarms = resources("aws_cloudwatch_metric_alarm")
check(set(alarms) == {"heartbeat", "errors"}, f"alarms: {sorted(alarms)}")
for name, alarm in alarms.items():
    check(unquote(alarm.get("treat_missing_data")) == "breaching", f"alarm {name} treats missing data as breaching")
    check("${aws_sns_topic.pages.arn}" in alarm.get("alarm_actions", []), f"alarm {name} pages the topic")
namespace = re.search(r'HEARTBEAT_NAMESPACE: &str = "([^"]+)"', (repo / "watchdog/src/spec/deploy.rs").read_text())
hb = alarms.get("heartbeat", {})
check(namespace and unquote(hb.get("namespace")) == namespace.group(1), "heartbeat alarm watches the watchdog's namespace")
check(unquote(hb.get("metric_name")) == "heartbeat", "heartbeat alarm watches heartbeat")
errors = json.dumps(alarms.get("errors", {}))
for metric in ("Errors", "Throttles"):
    check(f'\\"{metric}\\"' in errors, f"errors alarm reads Lambda {metric}")
check("aws_lambda_function.watchdog.function_name" in errors, "errors alarm is on the function")

# Documented and pinned.
readme = (module / "README.md").read_text()
for kind in ("variable", "output"):
    for name, body in tf[kind].items():
        check(unquote(body.get("description", "")) != "", f"{kind} {name} has a description")
        check(f"`{name}`" in readme, f"{kind} {name} is in README.md")
required = json.dumps(tf["terraform"])
check("hashicorp/aws" in required and "~> 5." in required, "the AWS provider version is pinned")
check("required_version" in required, "the Terraform version is pinned")

# The example uses the module.
example = load(module / "examples/shop")
check(unquote(example["module"].get("watchdog", {}).get("source")) == "../..", "examples/shop uses the module")

if problems:
    print("wiring problems:")
    for problem in problems:
        print(f"  - {problem}")
    sys.exit(1)
print(f"wiring ok: {len(res)} resources, {len(tf['variable'])} variables, {len(tf['output'])} outputs")
