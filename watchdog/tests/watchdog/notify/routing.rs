//! Silences, inhibition, repeat intervals and grouping.

use super::*;
use crate::checks::{ec2_query, make_alb, make_asg};

#[test]
fn a_silence_holds_a_page_until_it_ends_and_module_pages_fold_into_the_alb_page() {
    use std::sync::atomic::AtomicU16;
    let fx = Fixture::start();
    let slack = &fx.slack;
    // The ALB is the fixture's health endpoint.
    fx.set_health(502);
    let alb_port = fx.health_port;
    let modules_port = serve_health(std::sync::Arc::new(AtomicU16::new(503)));
    let cart_port = serve_health(std::sync::Arc::new(AtomicU16::new(500)));
    let rfc3339 = |t: u64| {
        aws_sdk_cloudwatch::primitives::DateTime::from_secs(t as i64)
            .fmt(aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime)
            .unwrap()
    };
    let spec = |silence_start: u64, silence_end: u64| {
        format!(
            r#"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      hook: {{ slack_webhook: {{ url: {{ env: VIGIL_TEST_SLACK_WEBHOOK }}, allow_insecure_http: true }} }}
    routes:
      - receivers: [hook]
    silences:
      - name: cart-maintenance
        match: {{ service: cart }}
        start: "{}"
        end: "{}"
      - name: weekly-never-now
        match: {{ service: platform }}
        days: [mon]
        from: "00:00"
        to: "00:00"
        time_zone: Europe/Berlin
    inhibit:
      - source: {{ service: platform, kind: http }}
        target: {{ labels: {{ availability: module }} }}
services:
  platform:
    checks:
      - http: {{ url: "http://127.0.0.1:{alb_port}/alb", severity: page }}
  checkout:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:{modules_port}/checkout", severity: page }}
  payment:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:{modules_port}/payment", severity: page }}
  cart:
    checks:
      - http: {{ url: "http://127.0.0.1:{cart_port}/cart", severity: page }}
"#,
            rfc3339(silence_start),
            rfc3339(silence_end)
        )
    };
    // The cart's maintenance window is on now.
    fx.spec(&spec(now() - 60, now() + 3600));
    let alb_fp = format!("http:platform:http://127.0.0.1:{alb_port}/alb");
    let checkout_fp = format!("http:checkout:http://127.0.0.1:{modules_port}/checkout");
    let payment_fp = format!("http:payment:http://127.0.0.1:{modules_port}/payment");
    let cart_fp = format!("http:cart:http://127.0.0.1:{cart_port}/cart");

    // Everything fails: four incidents open, but one message goes out: the ALB page, listing
    // the module pages it holds back. The cart page is silenced.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 4, "{report:#}");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let alb_page = hooks[0].body.to_string();
    assert!(alb_page.contains(&format!("`{alb_fp}`")), "{alb_page}");
    assert!(alb_page.contains("Also affected (held back)"), "{alb_page}");
    assert!(
        alb_page.contains(&checkout_fp) && alb_page.contains(&payment_fp),
        "{alb_page}"
    );
    assert!(!alb_page.contains(&cart_fp), "{alb_page}");
    let held: BTreeMap<String, String> = report["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["fingerprint"].as_str().unwrap().to_string(),
                h["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(held[&cart_fp], "silenced by cart-maintenance");
    assert_eq!(held[&checkout_fp], format!("inhibited by {alb_fp}"));
    assert_eq!(held[&payment_fp], format!("inhibited by {alb_fp}"));

    // The window ends while the cart still fails, and the ALB recovers while the modules still
    // fail: the cart page goes out, the ALB page resolves, the module pages go out.
    fx.spec(&spec(now() - 7200, now() - 3600));
    fx.set_health(200);
    let (report, _) = fx.run();
    assert!(report.get("held").is_none(), "{report:#}");
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 5, "{hooks:#?}");
    let texts: Vec<String> = hooks[1..]
        .iter()
        .map(|h| h.body["text"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "[RESOLVED] platform: ",
        "[PAGE] cart: ",
        "[PAGE] checkout: ",
        "[PAGE] payment: ",
    ] {
        assert_eq!(
            texts.iter().filter(|t| t.starts_with(expected)).count(),
            1,
            "{expected} in {texts:#?}"
        );
    }

    // Then quiet.
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 5);
}

#[test]
fn a_route_repeat_interval_sends_a_reminder_while_the_incident_fires() {
    let fx = Fixture::start();
    let slack = &fx.slack;
    fx.spec(
        r#"settings:
  state: { table: alert-state }
  notify:
    receivers:
      hook: { slack_webhook: { url: { env: VIGIL_TEST_SLACK_WEBHOOK }, allow_insecure_http: true } }
    routes:
      - match: { severity: page }
        receivers: [hook]
        repeat_interval: 2s
services:
  shop:
    checks:
      - http: { url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }
"#,
    );
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    // Within the interval: quiet.
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 1);
    // After it: one reminder, then quiet again.
    std::thread::sleep(Duration::from_millis(2100));
    let (report, _) = fx.run();
    assert_eq!(
        report["deliveries"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    let hooks = slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 2);
    assert!(
        hooks[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop")
    );
    fx.run();
    assert_eq!(slack.requests(WEBHOOK_PATH).len(), 2);
}

/// Another `/health`-style endpoint whose status the test sets: (status, port).
fn endpoint(code: u16) -> (std::sync::Arc<std::sync::atomic::AtomicU16>, u16) {
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(code));
    let port = serve_health(status.clone());
    (status, port)
}

#[test]
fn findings_firing_together_go_out_as_one_message_per_receiver_and_resolve_per_group() {
    use std::sync::atomic::Ordering;
    let fx = Fixture::start();
    let slack = &fx.slack;
    let (a, a_port) = endpoint(500);
    let (b, b_port) = endpoint(500);
    let (_cart, cart_port) = endpoint(500);
    fx.spec(&format!(
        r##"settings:
  state: {{ table: alert-state, resolve_after: 1 }}
  notify:
    group_by: [service]
    receivers:
      oncall-bot: {{ slack_bot: {{ token: {{ ssm: /vigil/slack/bot-token }}, channel: "#shop-oncall", api_url: "http://127.0.0.1:$SLACK_PORT/api", allow_insecure_http: true }} }}
      oncall-sns: {{ sns: {{ topic_arn: "$TOPIC_ARN" }} }}
      oncall-mail: {{ ses_email: {{ from: watchdog@shop.example, to: [oncall@shop.example] }} }}
    routes:
      - receivers: [oncall-bot, oncall-sns, oncall-mail]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
      - http: {{ url: "http://127.0.0.1:{a_port}/a", severity: page }}
      - http: {{ url: "http://127.0.0.1:{b_port}/b", severity: ticket }}
  cart:
    checks:
      - http: {{ url: "http://127.0.0.1:{cart_port}/cart", severity: page }}
"##
    ));
    let health_fp = fx.health_fp();
    let a_fp = format!("http:shop:http://127.0.0.1:{a_port}/a");
    let b_fp = format!("http:shop:http://127.0.0.1:{b_port}/b");
    let cart_fp = format!("http:cart:http://127.0.0.1:{cart_port}/cart");
    let shop = [health_fp.as_str(), a_fp.as_str(), b_fp.as_str()];

    // Four incidents open together: shop's three are one message per receiver, cart its own.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 3, "{report:#}");
    assert_eq!(decisions(&report, "ticket").len(), 1, "{report:#}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 6, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let grouped: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["fingerprint"] == "group:shop")
        .collect();
    assert_eq!(grouped.len(), 3, "{deliveries:#?}");
    for d in &grouped {
        let mut carried: Vec<&str> = d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        carried.sort();
        let mut want = shop.to_vec();
        want.sort();
        assert_eq!(carried, want, "{d:#}");
    }
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let shop_post = posts
        .iter()
        .find(|p| {
            p.body["text"]
                .as_str()
                .unwrap()
                .starts_with("[PAGE] shop: 3 findings")
        })
        .unwrap_or_else(|| panic!("{posts:#?}"));
    let shop_body = shop_post.body.to_string();
    for fp in shop {
        assert!(shop_body.contains(fp), "{fp} in {shop_body}");
    }
    assert!(shop_body.contains("[ticket]"), "{shop_body}");
    assert!(!shop_body.contains(&cart_fp), "{shop_body}");
    // The page colour is the most severe finding's.
    assert_eq!(shop_post.body["attachments"][0]["color"], "#e01e5a");
    let sns = fx.sns();
    assert_eq!(sns.len(), 2, "{sns:#?}");
    let shop_sns = sns
        .iter()
        .find(|m| {
            m[2].as_str()
                .unwrap()
                .starts_with("[PAGE] shop: 3 findings")
        })
        .unwrap_or_else(|| panic!("{sns:#?}"));
    let structure: Value = serde_json::from_str(shop_sns[1].as_str().unwrap()).unwrap();
    let email = structure["email"].as_str().unwrap();
    assert!(email.contains("Findings (3):"), "{email}");
    for fp in shop {
        assert!(email.contains(fp), "{fp} in {email}");
    }
    let mails = fx.ses();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let shop_mail = mails
        .iter()
        .map(Value::to_string)
        .find(|m| m.contains("[PAGE] shop: 3 findings"))
        .unwrap_or_else(|| panic!("{mails:#?}"));
    for fp in shop {
        assert!(shop_mail.contains(fp), "{fp} in {shop_mail}");
    }
    // Every finding of the group records the one message each receiver accepted.
    let page_ids = fx.ids(&health_fp);
    assert_eq!(page_ids.len(), 3, "{page_ids:?}");
    for fp in [&a_fp, &b_fp] {
        assert_eq!(fx.ids(fp), page_ids, "{fp}");
    }
    assert_ne!(fx.ids(&cart_fp)["oncall-bot"], page_ids["oncall-bot"]);
    let (channel, ts) = page_ids["oncall-bot"].split_once('|').unwrap();

    // Still firing: nothing more.
    fx.run();
    assert_eq!(fx.slack_total(), 2);

    // One finding of the group recovers while the others fire: its resolve goes out alone, and
    // the bot answers in the page's thread instead of turning the whole page green.
    a.store(200, Ordering::SeqCst);
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    assert!(slack.requests("/api/chat.update").is_empty());
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2].body["channel"], channel);
    assert_eq!(posts[2].body["thread_ts"], ts);
    assert!(
        posts[2].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop: http://127.0.0.1"),
        "{:#}",
        posts[2].body
    );
    assert_eq!(fx.sns().len(), 3);
    assert_eq!(fx.ses().len(), 3);

    // The rest of the group recovers in one run: one resolve per receiver for both, and the
    // page itself is updated to resolved.
    fx.set_health(200);
    b.store(200, Ordering::SeqCst);
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "resolve").len(), 2, "{report:#}");
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].body["channel"], channel);
    assert_eq!(updates[0].body["ts"], ts);
    let update = updates[0].body.to_string();
    assert!(
        updates[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop: 2 findings"),
        "{update}"
    );
    assert!(
        update.contains(&health_fp) && update.contains(&b_fp),
        "{update}"
    );
    assert_eq!(slack.requests("/api/chat.postMessage").len(), 3);
    let sns = fx.sns();
    assert_eq!(sns.len(), 4);
    assert!(
        sns[3][2]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] shop: 2 findings")
    );
    assert_eq!(fx.ses().len(), 4);

    // Cart fires on, untouched; nothing else goes out.
    let (report, _) = fx.run();
    assert!(report.get("deliveries").is_none(), "{report:#}");
    assert_eq!(fx.slack_total(), 4);
}

#[test]
fn a_group_waits_for_findings_that_join_it_within_group_wait() {
    use std::sync::atomic::Ordering;
    let fx = Fixture::start();
    let (b, b_port) = endpoint(200);
    fx.spec(&format!(
        r#"settings:
  state: {{ table: alert-state }}
  notify:
    group_by: [service]
    group_wait: 3s
    receivers:
      hook: {{ slack_webhook: {{ url: {{ env: VIGIL_TEST_SLACK_WEBHOOK }}, allow_insecure_http: true }} }}
    routes:
      - receivers: [hook]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
      - http: {{ url: "http://127.0.0.1:{b_port}/b", severity: page }}
"#
    ));
    let b_fp = format!("http:shop:http://127.0.0.1:{b_port}/b");
    let opened = std::time::Instant::now();

    // The first finding opens the incident, but the group waits for company.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 1, "{report:#}");
    assert!(report.get("deliveries").is_none(), "{report:#}");
    let held = report["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{report:#}");
    assert!(
        held[0]["why"]
            .as_str()
            .unwrap()
            .starts_with("grouped by service=shop: waiting"),
        "{held:#?}"
    );
    // A second one starts failing within the wait: it joins.
    b.store(500, Ordering::SeqCst);
    let (report, _) = fx.run();
    assert_eq!(report["held"].as_array().unwrap().len(), 2, "{report:#}");
    assert!(fx.slack.requests(WEBHOOK_PATH).is_empty());
    // Once the wait is over, one message carries both.
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(opened.elapsed()) + Duration::from_millis(1100),
    );
    let (report, _) = fx.run();
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{report:#}");
    let hooks = fx.slack.requests(WEBHOOK_PATH);
    assert_eq!(hooks.len(), 1);
    let body = hooks[0].body.to_string();
    assert!(
        hooks[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] shop: 2 findings"),
        "{body}"
    );
    assert!(
        body.contains(&fx.health_fp()) && body.contains(&b_fp),
        "{body}"
    );
    // Recorded for both: quiet afterwards.
    fx.run();
    assert_eq!(fx.slack.requests(WEBHOOK_PATH).len(), 1);
}

#[test]
fn module_pages_fold_into_the_alb_target_group_page_while_it_fails() {
    let fx = Fixture::start();
    let slack = &fx.slack;
    let (_payment, payment_port) = endpoint(503);
    // One of the ALB's three targets is stopped: the target group is below its minimum.
    let instances = fx.rt.block_on(async {
        let instances = make_asg(&fx.moto, "shop-checkout").await;
        make_alb(&fx.moto, &instances).await;
        ec2_query(
            &fx.moto,
            &[("Action", "StopInstances"), ("InstanceId.1", &instances[0])],
        )
        .await;
        instances
    });
    fx.spec(&format!(
        r##"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      oncall-bot: {{ slack_bot: {{ token: {{ ssm: /vigil/slack/bot-token }}, channel: "#shop-oncall", api_url: "http://127.0.0.1:$SLACK_PORT/api", allow_insecure_http: true }} }}
      oncall-sns: {{ sns: {{ topic_arn: "$TOPIC_ARN" }} }}
    routes:
      - receivers: [oncall-bot, oncall-sns]
    inhibit:
      - source: {{ service: platform, kind: target_group }}
        target: {{ labels: {{ availability: module }} }}
services:
  platform:
    checks:
      - target_group: {{ name: shop-checkout, min_healthy: 3, severity: page }}
  checkout:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
  payment:
    labels: {{ availability: module }}
    checks:
      - http: {{ url: "http://127.0.0.1:{payment_port}/health", severity: page }}
"##
    ));
    let alb_fp = "target_group:platform:shop-checkout";
    let checkout_fp = format!("http:checkout:http://127.0.0.1:{}/health", fx.health_port);
    let payment_fp = format!("http:payment:http://127.0.0.1:{payment_port}/health");

    // All three fail: one page goes out, the ALB's, listing the module pages it holds back.
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "page").len(), 3, "{report:#}");
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let page = posts[0].body.to_string();
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[PAGE] platform: shop-checkout"),
        "{page}"
    );
    assert!(page.contains("Also affected (held back)"), "{page}");
    assert!(
        page.contains(&checkout_fp) && page.contains(&payment_fp),
        "{page}"
    );
    let sns = fx.sns();
    assert_eq!(sns.len(), 1, "{sns:#?}");
    let email: Value = serde_json::from_str(sns[0][1].as_str().unwrap()).unwrap();
    let email = email["email"].as_str().unwrap();
    assert!(
        email.contains("Also affected (held back):") && email.contains(&payment_fp),
        "{email}"
    );
    let held: Vec<(&str, &str)> = report["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["fingerprint"].as_str().unwrap(),
                h["why"].as_str().unwrap(),
            )
        })
        .collect();
    let why = format!("inhibited by {alb_fp}");
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|(_, w)| *w == why), "{held:?}");

    // Still failing: nothing new.
    fx.run();
    assert_eq!(fx.slack_total(), 1);

    // The instance is back, the modules still fail: the ALB page turns resolved in place and
    // the module pages go out on their own.
    fx.rt.block_on(ec2_query(
        &fx.moto,
        &[
            ("Action", "StartInstances"),
            ("InstanceId.1", &instances[0]),
        ],
    ));
    let (report, _) = fx.run();
    assert_eq!(
        finding(&report, alb_fp)["status"],
        "ok",
        "the target group recovered: {report:#}"
    );
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    assert!(report.get("held").is_none(), "{report:#}");
    let updates = slack.requests("/api/chat.update");
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] platform")
    );
    let posts = slack.requests("/api/chat.postMessage");
    assert_eq!(posts.len(), 3, "{posts:#?}");
    for (service, fp) in [("checkout", &checkout_fp), ("payment", &payment_fp)] {
        assert_eq!(
            posts
                .iter()
                .filter(|p| p.body["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("[PAGE] {service}:"))
                    && p.body.to_string().contains(fp.as_str()))
                .count(),
            1,
            "{service}: {posts:#?}"
        );
    }
    assert_eq!(fx.sns().len(), 4, "a resolve and two pages");
}
