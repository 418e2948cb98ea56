//! Email through SES and SMTP (aiosmtpd, plain and STARTTLS with a private CA).

use super::*;

/// Messages aiosmtpd printed (its debugging handler prints each one whole).
fn smtp_messages(log: &str) -> Vec<String> {
    log.split("---------- MESSAGE FOLLOWS ----------")
        .skip(1)
        .map(|m| {
            m.split("------------ END MESSAGE ------------")
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The value of a header in one printed message.
fn mail_header(message: &str, name: &str) -> Option<String> {
    message.lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// An SMTP server (`python -u ARGS...`) on a free port, once it listens: (process, port).
/// `{port}` in the arguments is replaced by the port.
fn smtp_server(args: &[&str]) -> (vigil_test_support::ChildGuard, u16) {
    let port = vigil_test_support::free_port();
    let mut cmd = Command::new(vigil_test_support::venv_bin("python"));
    cmd.arg("-u")
        .args(args.iter().map(|a| a.replace("{port}", &port.to_string())));
    let server = vigil_test_support::ChildGuard::spawn("smtp-server", cmd).unwrap();
    assert!(
        vigil_test_support::wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the SMTP server did not start:\n{}",
        server.log()
    );
    (server, port)
}

#[test]
fn email_goes_out_once_through_ses_and_smtp_and_the_resolve_follows() {
    let fx = Fixture::start();
    let (smtp, smtp_port) = smtp_server(&["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:{port}"]);
    fx.spec(&format!(
        r#"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      mail-ses: {{ ses_email: {{ from: watchdog@shop.example, to: [oncall@shop.example] }} }}
      mail-smtp: {{ smtp_email: {{ host: 127.0.0.1, port: {smtp_port}, tls: none, from: "Vigil <watchdog@shop.example>", to: [oncall@shop.example, lead@shop.example] }} }}
    routes:
      - match: {{ service: shop }}
        receivers: [mail-ses, mail-smtp]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
"#
    ));
    let ses_sent = || fx.ses();

    let (report, _) = fx.run();
    let deliveries = report["deliveries"].as_array().unwrap();
    assert!(
        deliveries.len() == 2 && deliveries.iter().all(|d| d["ok"] == true),
        "{deliveries:#?}"
    );
    let ses = ses_sent();
    assert_eq!(ses.len(), 1, "{ses:#?}");
    let ses_text = ses[0].to_string();
    assert!(
        ses_text.contains("[PAGE] shop: http://127.0.0.1"),
        "{ses_text}"
    );
    assert!(ses_text.contains("oncall@shop.example"), "{ses_text}");
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 1, "{}", smtp.log());
    let page = &mails[0];
    assert!(
        mail_header(page, "Subject")
            .unwrap()
            .starts_with("[PAGE] shop: http://127.0.0.1")
    );
    assert!(
        mail_header(page, "To")
            .unwrap()
            .contains("lead@shop.example")
    );
    assert!(
        mail_header(page, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    assert!(page.contains("Content-Type: text/plain"), "{page}");
    assert!(page.contains("Content-Type: text/html"), "{page}");
    let page_id = mail_header(page, "Message-ID").unwrap();

    // Still firing: no second email.
    fx.run();
    assert_eq!(ses_sent().len(), 1);
    assert_eq!(smtp_messages(&smtp.log()).len(), 1);

    // Recovered: a resolve email on both, the SMTP one a reply to the page.
    fx.set_health(200);
    let (report, _) = fx.run();
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    let ses = ses_sent();
    assert_eq!(ses.len(), 2);
    assert!(
        ses[1].to_string().contains("[RESOLVED] shop"),
        "{:#}",
        ses[1]
    );
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 2);
    assert!(
        mail_header(&mails[1], "Subject")
            .unwrap()
            .starts_with("[RESOLVED] shop")
    );
    assert_eq!(mail_header(&mails[1], "In-Reply-To"), Some(page_id));
    assert_eq!(fx.slack_total(), 0);
}

/// aiosmtpd requiring STARTTLS (with the given certificate) and a login before MAIL, printing
/// each message with the TLS version and login it came with (never the password).
const STARTTLS_SERVER: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, port, user, password = sys.argv[1:6]

class Printer:
    async def handle_DATA(self, server, session, envelope):
        tls = session.ssl["cipher"][1] if session.ssl else "none"
        print("---------- MESSAGE FOLLOWS ----------")
        print(f"X-Test-Tls: {tls}")
        print(f"X-Test-Login: {session.auth_data.login.decode() if session.authenticated else 'none'}")
        print(envelope.content.decode("utf-8", "replace"))
        print("------------ END MESSAGE ------------", flush=True)
        return "250 OK"

def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
Controller(Printer(), hostname="127.0.0.1", port=int(port), tls_context=context,
           require_starttls=True, authenticator=authenticate, auth_require_tls=True,
           auth_required=True).start()
print("listening", flush=True)
while True:
    time.sleep(3600)
"#;

/// A private CA and a server certificate for 127.0.0.1 signed by it, made with the openssl
/// CLI: (CA pem, server cert pem, server key pem).
fn make_certificates(dir: &Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-days", "2", "-subj", "/CN=Vigil test CA"][..],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-keyout".into(),
            path("ca.key"),
            "-out".into(),
            path("ca.pem"),
        ])
        .collect(),
        [&["req"][..], &ec[..], &["-subj", "/CN=127.0.0.1"][..]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-keyout".into(),
                path("server.key"),
                "-out".into(),
                path("server.csr"),
            ])
            .collect(),
        [
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &path("server.ext"),
            "-out",
            &path("server.pem"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

#[test]
fn smtp_over_starttls_trusts_the_configured_ca_and_never_logs_the_password() {
    const PASSWORD: &str = "SmTp-PaSsWoRd-7731";
    let mut fx = Fixture::start();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let script = certs.path().join("server.py");
    std::fs::write(&script, STARTTLS_SERVER).unwrap();
    let (smtp, smtp_port) = smtp_server(&[
        script.to_str().unwrap(),
        &cert,
        &key,
        "{port}",
        "vigil",
        PASSWORD,
    ]);
    fx.env
        .push(("VIGIL_TEST_SMTP_PASSWORD".into(), PASSWORD.into()));
    // `mail` trusts the private CA; `mail-untrusted` is the same server without it.
    fx.spec(&format!(
        r#"settings:
  state: {{ table: alert-state }}
  notify:
    receivers:
      mail: {{ smtp_email: {{ host: 127.0.0.1, port: {smtp_port}, tls: starttls, ca_file: "{ca}", from: watchdog@shop.example, to: [oncall@shop.example], username: vigil, password: {{ env: VIGIL_TEST_SMTP_PASSWORD }} }} }}
      mail-untrusted: {{ smtp_email: {{ host: 127.0.0.1, port: {smtp_port}, from: watchdog@shop.example, to: [oncall@shop.example], username: vigil, password: {{ env: VIGIL_TEST_SMTP_PASSWORD }} }} }}
    routes:
      - receivers: [mail, mail-untrusted]
services:
  shop:
    checks:
      - http: {{ url: "http://127.0.0.1:$HEALTH_PORT/health", severity: page }}
"#
    ));

    let (report, mut logs) = fx.run();
    let deliveries = report["deliveries"].as_array().unwrap();
    let outcome = |receiver: &str| {
        deliveries
            .iter()
            .find(|d| d["receiver"] == receiver)
            .unwrap_or_else(|| panic!("{deliveries:#?}"))
            .clone()
    };
    assert_eq!(outcome("mail")["ok"], true, "{deliveries:#?}");
    let untrusted = outcome("mail-untrusted");
    assert_eq!(untrusted["ok"], false, "{deliveries:#?}");
    assert!(
        untrusted["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{untrusted:#}"
    );
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 1, "{}", smtp.log());
    let tls = mail_header(&mails[0], "X-Test-Tls").unwrap();
    assert!(tls.starts_with("TLSv1."), "{tls}");
    assert_eq!(
        mail_header(&mails[0], "X-Test-Login").as_deref(),
        Some("vigil")
    );
    assert!(
        mail_header(&mails[0], "Subject")
            .unwrap()
            .starts_with("[PAGE] shop:")
    );
    assert_eq!(fx.ids(&fx.health_fp()).keys().collect::<Vec<_>>(), ["mail"]);

    // The resolve goes the same way, as a reply to the page.
    fx.set_health(200);
    let (report, log) = fx.run();
    logs.push_str(&log);
    assert_eq!(decisions(&report, "resolve").len(), 1, "{report:#}");
    let mails = smtp_messages(&smtp.log());
    assert_eq!(mails.len(), 2, "{}", smtp.log());
    assert!(
        mail_header(&mails[1], "X-Test-Tls")
            .unwrap()
            .starts_with("TLSv1.")
    );
    assert!(
        mail_header(&mails[1], "Subject")
            .unwrap()
            .starts_with("[RESOLVED] shop:")
    );
    assert_eq!(
        mail_header(&mails[1], "In-Reply-To"),
        mail_header(&mails[0], "Message-ID")
    );
    assert!(logs.contains("notification failed"), "{logs}");
    assert!(
        !logs.contains(PASSWORD),
        "the password is in the logs:\n{logs}"
    );
    assert!(!report.to_string().contains(PASSWORD));
}
