//! Once per incident and receiver: concurrent invocations, unreadable state, failing
//! receivers, missing secrets.

use super::*;

/// The schedule and state-change events start invocations exactly during incidents. Counted
/// at the receivers: four invocations over one failing check, started 0.4 s apart, with a
/// Slack that takes two seconds per call — so the later ones read state after the first opened
/// the incident but while it is still sending — give each receiver exactly one message; the
/// same for the resolve.
#[test]
fn concurrent_invocations_deliver_one_message_per_receiver() {
    let fx = Fixture::standard();
    fx.slack.answer_slowly(Duration::from_secs(2));
    let run_four = || {
        let children: Vec<_> = (0..4)
            .map(|i| {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(400));
                }
                fx.command()
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn vigil-watchdog")
            })
            .collect();
        children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                let log = String::from_utf8_lossy(&out.stderr).to_string();
                assert!(out.status.success(), "{log}");
                assert!(!log.contains(BOT_TOKEN), "the bot token was logged");
                serde_json::from_slice::<Value>(&out.stdout).unwrap()
            })
            .collect::<Vec<Value>>()
    };
    let reports = run_four();
    let pages: usize = reports.iter().map(|r| decisions(r, "page").len()).sum();
    assert_eq!(pages, 1, "{reports:#?}");
    assert_eq!(fx.slack.requests("/api/chat.postMessage").len(), 1);
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 1);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);
    let ids = fx.ids(&fx.health_fp());
    assert_eq!(ids.len(), 4, "{ids:?}");
    // No claim is left behind once every message is recorded.
    let item = fx.item(&fx.health_fp());
    assert!(item["claims"].as_m().unwrap().is_empty(), "{item:?}");

    // Recovered: two ok rounds (resolve_after: 2), four invocations each.
    fx.set_health(200);
    run_four();
    run_four();
    assert_eq!(fx.slack.requests("/api/chat.update").len(), 1);
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);
    assert_eq!(fx.slack_total(), 4);
}

/// DynamoDB unreadable: the watchdog cannot know what it sent. It still pages — the failing
/// check, and the outage of its own state — but not again on the next run: at most once per
/// `unreadable_repeat`.
#[test]
fn unreadable_state_pages_once_per_interval_and_reports_itself() {
    let mut fx = Fixture::standard();
    fx.env.push((
        "AWS_ENDPOINT_URL_DYNAMODB".into(),
        "http://127.0.0.1:1".into(),
    ));
    fx.env.push((
        "VIGIL_FALLBACK_LEDGER".into(),
        fx.spec_dir().join("ledger.json").display().to_string(),
    ));
    let (report, _) = fx.run();
    let pages: Vec<&str> = decisions(&report, "page")
        .iter()
        .map(|d| d["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(pages.len(), 2, "{report:#}");
    assert!(pages.contains(&fx.health_fp().as_str()), "{pages:?}");
    assert!(
        pages.contains(&"watchdog:watchdog:state:alert-state"),
        "{pages:?}"
    );
    assert!(
        decisions(&report, "page")
            .iter()
            .all(|d| d["cause"]["kind"] == "state_unreadable"),
        "{report:#}"
    );
    let posts = fx.slack.requests("/api/chat.postMessage").len();
    assert_eq!(posts, 2, "the check and the state outage");
    // The next run, still unreadable: nothing new is sent.
    let (report, _) = fx.run();
    assert!(decisions(&report, "page").is_empty(), "{report:#}");
    assert_eq!(fx.slack.requests("/api/chat.postMessage").len(), posts);
}

#[test]
fn one_incident_pages_each_receiver_once_and_resolves_in_place() {
    let fx = Fixture::standard();
    let slack = &fx.slack;
    let fingerprint = fx.health_fp();
    // Slack rate-limits the first webhook post.
    slack.answer_next(WEBHOOK_PATH, 429, Some(1));
    let mut logs = String::new();

    // Run 1: the incident opens; every receiver gets exactly one message.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "page").len(), 1, "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "#shop-oncall");
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop: http://")
    );
    assert_eq!(posts[0].body["attachments"][0]["color"], "#e01e5a");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 2, "the 429 is retried once");
    let waited = hooks[1].at - hooks[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After 1 honoured: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let sent = fx.sns();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    // moto keeps [message id, message, subject, attributes, group id].
    let structure: Value = serde_json::from_str(sent[0][1].as_str().unwrap()).unwrap();
    assert!(structure["sms"].as_str().unwrap().chars().count() <= 140);
    assert!(
        structure["email"]
            .as_str()
            .unwrap()
            .contains("Runbook: https://runbooks.example/shop")
    );
    assert!(
        structure["default"]
            .as_str()
            .unwrap()
            .contains("Fingerprint: http:shop:")
    );
    let subject = sent[0][2].as_str().unwrap();
    assert!(
        subject.starts_with("[PAGE] shop: ") && subject.chars().count() < 100,
        "{subject}"
    );
    assert_eq!(sent[0][3]["severity"]["Value"], "page");
    assert_eq!(sent[0][3]["status"]["Value"], "firing");
    assert_eq!(sent[0][3]["service"]["Value"], "shop");
    // One email (SES), text + HTML.
    let mails = fx.ses();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = mails[0].to_string();
    assert!(mail.contains("[PAGE] shop: http://127.0.0.1"), "{mail}");
    assert!(mail.contains("<!DOCTYPE html>"), "{mail}");
    assert!(mail.contains("oncall@shop.example"), "{mail}");
    let ids = fx.ids(&fingerprint);
    assert_eq!(
        ids.keys().collect::<Vec<_>>(),
        ["oncall-bot", "oncall-hook", "oncall-mail", "oncall-sns"]
    );
    let page_ts = ids["oncall-bot"].clone();
    // `channel|ts` as Slack answered the postMessage (the stand-in's ts counts requests).
    assert!(page_ts.starts_with("C0ALERTS|1700000000.0000"), "{page_ts}");

    // The page is also an event on the bus, with the finding in its detail.
    let events = fx.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["source"], "vigil.watchdog");
    assert_eq!(events[0]["detail-type"], "Vigil Page");
    assert_eq!(events[0]["detail"]["fingerprint"], fingerprint.as_str());
    assert_eq!(events[0]["detail"]["service"], "shop");
    assert_eq!(events[0]["detail"]["status"], "firing");
    assert_eq!(report["events"][0]["ok"], true, "{report:#}");

    // Run 2: still failing; nothing is sent again.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(
        decisions(&report, "already_notified").len(),
        1,
        "{report:#}"
    );
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 1);
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);

    // Recovered, but one ok evaluation is not enough (resolve_after: 2); a failure in between
    // starts the count again: no flapping and nothing sent.
    let quiet_run = |code: u16, reason: &str, logs: &mut String| {
        fx.set_health(code);
        let (report, log) = fx.run();
        logs.push_str(&log);
        let quiet = decisions(&report, "already_notified");
        assert_eq!(quiet.len(), 1, "{report:#}");
        assert_eq!(quiet[0]["reason"], reason);
        assert!(report.get("deliveries").is_none(), "{report:#}");
    };
    quiet_run(
        200,
        "ok 1 of 2 consecutive evaluations needed to resolve",
        &mut logs,
    );
    quiet_run(500, "still firing; already notified", &mut logs);
    quiet_run(
        200,
        "ok 1 of 2 consecutive evaluations needed to resolve",
        &mut logs,
    );
    assert_eq!(fx.slack_total(), 3);
    assert_eq!(fx.sns().len(), 1);

    // The second ok in a row resolves. The bot's message is updated in place; the webhook and
    // SNS get a resolved message.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 1);
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 1);
    let (channel, ts) = page_ts.split_once('|').unwrap();
    assert_eq!(updates[0].body["channel"], channel);
    assert_eq!(updates[0].body["ts"], ts);
    assert!(
        updates[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop")
    );
    assert_eq!(updates[0].body["attachments"][0]["color"], "#2eb67d");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 3);
    assert!(
        hooks[2].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED]")
    );
    let sent = fx.sns();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1][2].as_str().unwrap().starts_with("[RESOLVED] shop"),
        "{sent:#?}"
    );
    assert_eq!(sent[1][3]["status"]["Value"], "resolved");
    let mails = fx.ses();
    assert_eq!(mails.len(), 2);
    assert!(
        mails[1].to_string().contains("[RESOLVED] shop"),
        "{:#}",
        mails[1]
    );
    let events = fx.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["detail-type"], "Vigil Resolve");
    assert_eq!(events[1]["detail"]["status"], "ok");

    // Healthy and resolved: silence.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert!(
        report["decisions"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(fx.slack_total(), 5);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);

    // Every run put the watchdog's own heartbeat (seven runs) and counted what it sent.
    let sums = fx.rt.block_on(async {
        let cw = aws_sdk_cloudwatch::Client::new(&fx.moto.sdk_config().await);
        let mut sums = BTreeMap::new();
        for metric in ["heartbeat", "notifications_sent", "notifications_failed"] {
            let out = cw
                .get_metric_statistics()
                .namespace("Vigil/Watchdog")
                .metric_name(metric)
                .start_time(DateTime::from_secs(now() as i64 - 900))
                .end_time(DateTime::from_secs(now() as i64 + 60))
                .period(60)
                .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
                .send()
                .await
                .unwrap();
            let sum: f64 = out.datapoints().iter().filter_map(|d| d.sum()).sum();
            sums.insert(metric, sum);
        }
        sums
    });
    assert_eq!(sums["heartbeat"], 7.0, "{sums:?}");
    assert_eq!(sums["notifications_sent"], 8.0, "{sums:?}");
    assert_eq!(sums["notifications_failed"], 0.0, "{sums:?}");

    // The bot token went only into the Authorization header; no secret reached the logs.
    assert!(posts[0].authorization.as_deref() == Some(&format!("Bearer {BOT_TOKEN}")));
    assert!(
        logs.contains("notified"),
        "debug logs were captured:\n{logs}"
    );
    for secret in [BOT_TOKEN, "SeCrEtToKeN", "WeBhOoKsEcReT"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

#[test]
fn a_failing_receiver_gets_its_page_and_its_resolve_on_the_next_run_exactly_once() {
    let fx = Fixture::standard();
    let slack = &fx.slack;
    let fingerprint = fx.health_fp();
    let failed = |report: &Value| -> Vec<Value> {
        report["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["ok"] == false)
            .cloned()
            .collect()
    };
    // Slack's Web API is down for every attempt of this invocation.
    for _ in 0..4 {
        slack.answer_next("/api/chat.postMessage", 500, None);
    }

    let (report, mut logs) = fx.run();
    let failed_now = failed(&report);
    assert_eq!(failed_now.len(), 1, "{report:#}");
    assert_eq!(failed_now[0]["receiver"], "oncall-bot");
    assert!(
        failed_now[0]["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 4 attempts"),
        "{failed_now:#?}"
    );
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 4);
    // The others were not held back, and only they are recorded as notified.
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);
    assert_eq!(
        fx.ids(&fingerprint).keys().collect::<Vec<_>>(),
        ["oncall-hook", "oncall-mail", "oncall-sns"]
    );

    // Next run: the incident is already notified, but the bot never accepted: it alone is sent.
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(
        decisions(&report, "already_notified").len(),
        1,
        "{report:#}"
    );
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["receiver"], "oncall-bot");
    assert_eq!(deliveries[0]["ok"], true);
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 5);
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    assert_eq!(fx.sns().len(), 1);
    assert_eq!(fx.ses().len(), 1);
    let ids = fx.ids(&fingerprint);
    assert_eq!(ids.len(), 4, "{ids:?}");

    // And then nothing more while it fires.
    let (report, _) = fx.run();
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(fx.slack_total(), 6);

    // Recovered (two ok runs); on the resolving run Slack's chat.update is down throughout.
    fx.set_health(200);
    fx.run();
    for _ in 0..4 {
        slack.answer_next("/api/chat.update", 500, None);
    }
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    let failed_now = failed(&report);
    assert_eq!(failed_now.len(), 1, "{report:#}");
    assert_eq!(failed_now[0]["receiver"], "oncall-bot");
    assert_eq!(failed_now[0]["message"], "resolved");
    assert_eq!(slack.requests("/api/chat.update").len(), 4);
    // The webhook, SNS and email got their resolve at once; only the bot is still owed one.
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);
    let item = fx.item(&fingerprint);
    assert_eq!(item["status"].as_s().unwrap(), "resolved");
    assert_eq!(item["resolve_pending"].as_ss().unwrap(), &["oncall-bot"]);
    assert_eq!(fx.events().len(), 2, "a page and a resolve event");

    // Next run: Slack is back; the resolve is retried on the bot alone and updates the page.
    let (report, log) = fx.run();
    logs.push_str(&log);
    let resolves = decisions(&report, "resolve");
    assert_eq!(resolves.len(), 1, "{report:#}");
    assert_eq!(resolves[0]["cause"]["kind"], "resolve_owed", "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["receiver"], "oncall-bot");
    assert_eq!(deliveries[0]["ok"], true);
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 5);
    let (channel, ts) = ids["oncall-bot"].split_once('|').unwrap();
    assert_eq!(updates[4].body["channel"], channel);
    assert_eq!(updates[4].body["ts"], ts);
    assert!(
        updates[4].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop")
    );
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
    assert_eq!(fx.sns().len(), 2);
    assert_eq!(fx.ses().len(), 2);
    assert_eq!(fx.events().len(), 2, "a retried resolve is no new event");
    assert!(!fx.item(&fingerprint).contains_key("resolve_pending"));

    // Then quiet: nothing is owed any more.
    let (report, _) = fx.run();
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert!(
        report["decisions"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(fx.slack_total(), 6 + 5 + 1);
    for secret in [BOT_TOKEN, "SeCrEtToKeN", "WeBhOoKsEcReT"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}

#[test]
fn a_missing_secret_is_a_clear_error_naming_it() {
    let fx = Fixture::start();
    let ssm = |put: bool| {
        fx.rt.block_on(async {
            let ssm = aws_sdk_ssm::Client::new(&fx.moto.sdk_config().await);
            if put {
                ssm.put_parameter()
                    .name("/vigil/slack/bot-token")
                    .value(BOT_TOKEN)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .send()
                    .await
                    .expect("PutParameter");
            } else {
                ssm.delete_parameter()
                    .name("/vigil/slack/bot-token")
                    .send()
                    .await
                    .expect("DeleteParameter");
            }
        })
    };
    ssm(false);
    fx.spec(STANDARD_SPEC);
    let check = |with_webhook: bool| {
        let mut cmd = watchdog(&fx.moto, &["check", "--spec", fx.dir_str(), "--once"]);
        if with_webhook {
            cmd.env("VIGIL_TEST_SLACK_WEBHOOK", fx.slack.webhook_url());
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // The bot token's SSM parameter does not exist.
    let stderr = check(true);
    assert!(
        stderr.contains(
            "receiver oncall-bot: secret SSM parameter /vigil/slack/bot-token does not exist"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("WeBhOoKsEcReT"), "{stderr}");
    // With it in place, the webhook's environment variable is what is missing.
    ssm(true);
    let stderr = check(false);
    assert!(
        stderr.contains(
            "receiver oncall-hook: secret environment variable VIGIL_TEST_SLACK_WEBHOOK is not set"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("SeCrEtToKeN"), "{stderr}");
    // A Slack URL over plain HTTP would carry the secret in clear: refused unless allowed.
    fx.spec(&STANDARD_SPEC.replace(", allow_insecure_http: true", ""));
    let stderr = check(true);
    assert!(
        stderr.contains(
            "receiver oncall-bot: api_url uses http://, which would send the secret in clear"
        ),
        "{stderr}"
    );
    // Nothing was sent by a watchdog that could not start its notifier.
    assert_eq!(fx.slack_total(), 0);
}
