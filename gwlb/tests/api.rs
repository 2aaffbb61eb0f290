//! The control API and the metrics endpoint, end to end over real TCP and Unix sockets, in
//! front of the gateway's real control loop (`control_rig`: no DPDK, no root). Requests are
//! written by hand here, independently of `gwlb::cli::client`.

mod control_rig;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use control_rig::{without_uptime, Gateway, FLOW_COUNT};
use gwlb::api::{serve, serve_metrics, ApiError, ApiServer};
use gwlb::cli::client::{ApiClient, ClientError};
use gwlb::config::Listen;
use gwlb::control::{
    ControlHandle, FlowInfo, FlowPage, StatsReport, TargetGroupInfo, TargetInfo, TargetSpec,
    TargetState,
};
use serde_json::{json, Value};

/// A reply: status, header block (lower-cased), body.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// `error.field` of an error reply.
    fn field(&self) -> String {
        self.json()["error"]["field"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.field: {}", self.body))
            .to_owned()
    }

    fn kind(&self) -> String {
        self.json()["error"]["kind"].as_str().unwrap().to_owned()
    }
}

fn send_raw(listen: &Listen, request: &[u8]) -> Reply {
    let mut raw = Vec::new();
    match listen {
        Listen::Tcp(a) => {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(request).unwrap();
            s.read_to_end(&mut raw).unwrap();
        }
        Listen::Unix(p) => {
            let mut s = UnixStream::connect(p).unwrap();
            s.write_all(request).unwrap();
            s.read_to_end(&mut raw).unwrap();
        }
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn request(listen: &Listen, method: &str, path: &str, body: Option<&str>, extra: &str) -> Reply {
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    send_raw(listen, req.as_bytes())
}

fn get(s: &ApiServer, path: &str) -> Reply {
    request(s.local_addr(), "GET", path, None, "")
}

fn with_body(s: &ApiServer, method: &str, path: &str, body: &str) -> Reply {
    request(s.local_addr(), method, path, Some(body), "")
}

fn localhost() -> Listen {
    Listen::Tcp("127.0.0.1:0".parse().unwrap())
}

fn start() -> (Gateway, ApiServer) {
    let gw = Gateway::start();
    let server = serve(&localhost(), None, gw.handle.clone()).unwrap();
    (gw, server)
}

fn temp_socket(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gwlb-api-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn test_list_groups_and_one_group() {
    let (gw, s) = start();
    let r = get(&s, "/v1/target-groups");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    let groups: Vec<TargetGroupInfo> = r.parse();
    assert_eq!(groups, gw.groups());
    assert_eq!(groups[0].healthy_count, 1);
    assert_eq!(groups[0].unhealthy_count, 1);
    let unhealthy = &groups[0].targets[1];
    assert_eq!(unhealthy.state, TargetState::Unhealthy);
    assert!(unhealthy
        .reason
        .as_deref()
        .unwrap()
        .contains("connection refused"));

    let r = get(&s, "/v1/target-groups/inspection");
    assert_eq!(r.status, 200);
    assert_eq!(r.parse::<TargetGroupInfo>().name, "inspection");

    let r = get(&s, "/v1/target-groups/inspection/targets/fd00:2::21");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.parse::<TargetInfo>().address,
        "fd00:2::21".parse::<IpAddr>().unwrap()
    );

    let r = get(&s, "/v1/target-groups/inspection/health-check");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["protocol"], "tcp");

    let r = get(&s, "/v1/target-groups/nope");
    assert_eq!((r.status, r.kind().as_str()), (404, "not_found"));
    assert!(r.body.contains("\\\"nope\\\""), "{}", r.body);
    let r = get(&s, "/v1/target-groups/firewalls/targets/10.0.2.99");
    assert_eq!(r.status, 404);
}

#[test]
fn test_register_weight_deregister_round_trip() {
    let (gw, s) = start();
    let path = "/v1/target-groups/firewalls/targets";
    let r = with_body(
        &s,
        "POST",
        path,
        r#"{"address":"10.0.2.50","weight":20,"mac":"02:00:00:00:02:32"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let t: TargetInfo = r.parse();
    assert_eq!((t.weight, t.state), (20, TargetState::Healthy));

    // It is in the listing, and the model holds it.
    let listed: Vec<TargetInfo> = get(&s, path).parse();
    assert!(listed.iter().any(|t| t.address.to_string() == "10.0.2.50"));
    assert_eq!(gw.groups()[0].healthy_count, 2);

    // Twice: conflict.
    let r = with_body(
        &s,
        "POST",
        path,
        r#"{"address":"10.0.2.50","mac":"02:00:00:00:02:32"}"#,
    );
    assert_eq!(
        (r.status, r.kind().as_str()),
        (409, "conflict"),
        "{}",
        r.body
    );

    // Re-weight.
    let r = with_body(&s, "PATCH", &format!("{path}/10.0.2.50"), r#"{"weight":7}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let t: TargetInfo = get(&s, &format!("{path}/10.0.2.50")).parse();
    assert_eq!(t.weight, 7);

    // Out of range: rejected by the control loop, field named, nothing changed.
    let r = with_body(
        &s,
        "PATCH",
        &format!("{path}/10.0.2.50"),
        r#"{"weight":1001}"#,
    );
    assert_eq!(
        (r.status, r.field().as_str()),
        (400, "weight"),
        "{}",
        r.body
    );
    assert_eq!(
        get(&s, &format!("{path}/10.0.2.50"))
            .parse::<TargetInfo>()
            .weight,
        7
    );

    // Deregister: draining for the group's delay; twice is a conflict.
    let r = request(
        s.local_addr(),
        "DELETE",
        &format!("{path}/10.0.2.50"),
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t: TargetInfo = r.parse();
    assert_eq!(
        (t.state, t.drain_remaining_s),
        (TargetState::Draining, Some(120))
    );
    let r = request(
        s.local_addr(),
        "DELETE",
        &format!("{path}/10.0.2.50"),
        None,
        "",
    );
    assert_eq!(r.status, 409);
    assert_eq!(gw.groups()[0].healthy_count, 1);

    // IPv6 in the path, percent-encoded or not.
    let r = request(
        s.local_addr(),
        "DELETE",
        "/v1/target-groups/inspection/targets/fd00%3A2%3A%3A21",
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn test_bad_input_names_the_problem() {
    let (gw, s) = start();
    let before = gw.groups();
    let path = "/v1/target-groups/firewalls/targets";
    let cases: [(&str, &str, &str, &str, u16, &str); 10] = [
        ("POST", path, "{\"address\":", "", 400, "body"),
        ("POST", path, "", "", 400, "body"),
        (
            "POST",
            path,
            r#"{"address":"10.0.2.60","wieght":1}"#,
            "",
            400,
            "wieght",
        ),
        (
            "POST",
            path,
            r#"{"address":"10.0.2.300"}"#,
            "",
            400,
            "address",
        ),
        ("POST", path, r#"{"weight":1}"#, "", 400, "address"),
        (
            "POST",
            path,
            r#"{"address":"10.0.2.60","port":"nope"}"#,
            "",
            400,
            "port",
        ),
        (
            "POST",
            path,
            r#"{"address":"10.0.2.60","weight":5000}"#,
            "",
            400,
            "weight",
        ),
        (
            "PATCH",
            &format!("{path}/not-an-ip"),
            r#"{"weight":1}"#,
            "",
            400,
            "address",
        ),
        (
            "PATCH",
            &format!("{path}/10.0.2.11"),
            r#"{"weight":"x"}"#,
            "",
            400,
            "weight",
        ),
        ("GET", "/v1/stats?verbose=1", "", "", 400, "verbose"),
    ];
    for (method, path, body, extra, status, field) in cases {
        let r = request(s.local_addr(), method, path, Some(body), extra);
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.body);
        assert_eq!(r.field(), field, "{method} {path} {body}: {}", r.body);
        assert_eq!(r.kind(), "invalid");
    }
    // Nothing was applied by any of them.
    assert_eq!(gw.groups(), before);

    let r = get(&s, "/v1/nothing-here");
    assert_eq!((r.status, r.kind().as_str()), (404, "not_found"));
    let r = get(&s, "/");
    assert_eq!(r.status, 404);

    let r = request(s.local_addr(), "PUT", "/v1/stats", Some("{}"), "");
    assert_eq!((r.status, r.kind().as_str()), (405, "method_not_allowed"));
    assert!(r.headers.contains("\r\nallow: get"), "{}", r.headers);
    let r = request(s.local_addr(), "GET", "/v1/reload", None, "");
    assert_eq!(r.status, 405);
    assert!(r.headers.contains("\r\nallow: post"), "{}", r.headers);

    // 64 KiB is the limit.
    let big = format!(
        "{{\"address\":\"10.0.2.61\",\"port\":\"{}\"}}",
        "x".repeat(70_000)
    );
    let r = with_body(&s, "POST", path, &big);
    assert_eq!((r.status, r.kind().as_str()), (413, "payload_too_large"));
}

#[test]
fn test_health_check_patch_whole_or_nothing() {
    let (gw, s) = start();
    let path = "/v1/target-groups/firewalls/health-check";
    let r = with_body(
        &s,
        "PATCH",
        path,
        r#"{"interval_ms":2000,"healthy_threshold":5}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let g: TargetGroupInfo = r.parse();
    assert_eq!(g.health_check.interval_ms, 2000);
    assert_eq!(g.health_check.healthy_threshold, 5);

    // A valid interval with an invalid protocol: neither is applied.
    let r = with_body(
        &s,
        "PATCH",
        path,
        r#"{"interval_ms":3000,"protocol":"icmp"}"#,
    );
    assert_eq!((r.status, r.field().as_str()), (400, "protocol"));
    assert_eq!(gw.groups()[0].health_check.interval_ms, 2000);

    let r = with_body(&s, "PATCH", path, r#"{"interval":3000}"#);
    assert_eq!((r.status, r.field().as_str()), (400, "interval"));
    let r = with_body(&s, "PATCH", path, "{}");
    assert_eq!((r.status, r.field().as_str()), (400, "body"));
    let r = with_body(
        &s,
        "PATCH",
        "/v1/target-groups/x/health-check",
        r#"{"port":1}"#,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn test_flows_paginate_and_filter() {
    let (gw, s) = start();
    let mut all: Vec<FlowInfo> = Vec::new();
    let mut path = "/v1/flows?limit=60".to_owned();
    let mut pages = 0;
    loop {
        let r = get(&s, &path);
        assert_eq!(r.status, 200, "{}", r.body);
        let page: FlowPage = r.parse();
        assert!(page.flows.len() <= 60);
        all.extend(page.flows);
        pages += 1;
        match page.next_cursor {
            Some(c) => path = format!("/v1/flows?limit=60&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, FLOW_COUNT.div_ceil(60));
    assert_eq!(all, gw.flows());

    // Filters combine; IPv6 percent-encoded in the query.
    assert_eq!(all.len(), FLOW_COUNT);
    let page: FlowPage = get(
        &s,
        "/v1/flows?appliance=10.0.2.11&address=fd00%3A9%3A%3A1&port=80&limit=1000",
    )
    .parse();
    let expected: Vec<FlowInfo> = gw
        .flows()
        .into_iter()
        .filter(|f| {
            f.appliance.to_string() == "10.0.2.11"
                && f.addr_b.to_string() == "fd00:9::1"
                && f.port_b == 80
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(page.flows, expected);
    assert_eq!(page.next_cursor, None);

    let page: FlowPage = get(&s, "/v1/flows?group=firewalls&address=fd00:1::4").parse();
    assert_eq!(page.flows.len(), 1, "{:?}", page.flows);
    assert_eq!(page.flows[0].port_a, 20_004);
    let page: FlowPage = get(&s, "/v1/flows?group=inspection").parse();
    assert_eq!(page.flows, vec![], "inspection has no user port");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=20000", "limit"),
        ("port=99999", "port"),
        ("appliance=fw1", "appliance"),
        ("cursor=zzz", "cursor"),
        ("sort=idle", "sort"),
    ] {
        let r = get(&s, &format!("/v1/flows?{query}"));
        assert_eq!(
            (r.status, r.field().as_str()),
            (400, field),
            "{query}: {}",
            r.body
        );
    }
}

#[test]
fn test_stats_and_reload() {
    let (gw, s) = start();
    let r = get(&s, "/v1/stats");
    assert_eq!(r.status, 200);
    let stats: StatsReport = r.parse();
    assert_eq!(without_uptime(stats.clone()), gw.stats());
    assert_eq!(
        stats.total.rx,
        stats.workers.iter().map(|w| w.rx).sum::<u64>()
    );

    let r = request(s.local_addr(), "POST", "/v1/reload", None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["file"], gw.config_path.display().to_string());
    assert_eq!(r.json()["registered"], json!([]), "{}", r.body);
    // A broken file: rejected naming the field, the running configuration kept.
    let before = gw.groups();
    std::fs::write(
        &gw.config_path,
        control_rig::CONFIG.replace("deregistration_delay_s = 30", "deregistration_delay_s = -1"),
    )
    .unwrap();
    let r = request(s.local_addr(), "POST", "/v1/reload", None, "");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.field(), "target_groups[1].deregistration_delay_s");
    assert_eq!(gw.groups(), before);
}

#[test]
fn test_token_required_when_configured() {
    let gw = Gateway::start();
    let token = "0123456789abcdef-secret";
    let s = serve(&localhost(), Some(token.into()), gw.handle.clone()).unwrap();
    let a = s.local_addr();

    let r = request(a, "GET", "/v1/stats", None, "");
    assert_eq!((r.status, r.kind().as_str()), (401, "unauthorized"));
    assert!(
        r.headers.contains("www-authenticate: bearer"),
        "{}",
        r.headers
    );
    let r = request(
        a,
        "GET",
        "/v1/stats",
        None,
        "Authorization: Bearer wrong\r\n",
    );
    assert_eq!(r.status, 401);
    let r = request(
        a,
        "GET",
        "/v1/stats",
        None,
        &format!("Authorization: Basic {token}\r\n"),
    );
    assert_eq!(r.status, 401);
    // A change without the token is not applied.
    let r = request(
        a,
        "POST",
        "/v1/target-groups/firewalls/targets",
        Some(r#"{"address":"10.0.2.70","mac":"02:00:00:00:02:46"}"#),
        "",
    );
    assert_eq!(r.status, 401);
    assert_eq!(gw.groups()[0].targets.len(), 2);

    let auth = format!("Authorization: Bearer {token}\r\n");
    let r = request(a, "GET", "/v1/stats", None, &auth);
    assert_eq!(r.status, 200, "{}", r.body);

    // The client sends it too.
    let c = ApiClient::new(a.clone(), Some(token.into()));
    assert_eq!(without_uptime(c.stats().unwrap()), gw.stats());
    let e = ApiClient::new(a.clone(), None).stats().unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 401, .. }), "{e:?}");
}

#[test]
fn test_unix_socket_mode_stale_file_and_cleanup() {
    let gw = Gateway::start();
    let path = temp_socket("api.sock");
    // A stale socket from a previous run: bound, then its listener gone.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let listen = Listen::Unix(path.clone());
    let s = serve(&listen, None, gw.handle.clone()).unwrap();
    assert_eq!(s.local_addr(), &listen);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let r = get(&s, "/v1/target-groups");
    assert_eq!(r.status, 200);
    assert_eq!(r.parse::<Vec<TargetGroupInfo>>(), gw.groups());

    // A second server on the same live socket is refused.
    let e = serve(&listen, None, gw.handle.clone()).unwrap_err();
    assert!(matches!(e, ApiError::SocketInUse { .. }), "{e}");

    // The client over the Unix socket, with the API's error mapped.
    let c = ApiClient::new(listen.clone(), None);
    let spec = TargetSpec {
        address: "10.0.2.80".parse().unwrap(),
        weight: Some(2000),
        port: None,
        mac: None,
    };
    match c.register("firewalls", &spec).unwrap_err() {
        ClientError::Api { status, detail } => {
            assert_eq!((status, detail.field.as_deref()), (400, Some("weight")));
        }
        e => panic!("{e:?}"),
    }

    drop(s);
    assert!(!path.exists(), "socket file left behind");
    let e = c.stats().unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");

    // A regular file in the way is not removed.
    std::fs::write(&path, "not a socket").unwrap();
    let e = serve(&listen, None, gw.handle.clone()).unwrap_err();
    assert!(matches!(e, ApiError::NotASocket { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn test_control_loop_gone_is_503() {
    let (handle, rx) = ControlHandle::channel();
    drop(rx);
    let s = serve(&localhost(), None, handle.clone()).unwrap();
    let r = get(&s, "/v1/target-groups");
    assert_eq!(
        (r.status, r.kind().as_str()),
        (503, "unavailable"),
        "{}",
        r.body
    );
    let m = serve_metrics(&localhost(), handle).unwrap();
    let r = get(&m, "/metrics");
    assert_eq!(r.status, 503);
}

#[test]
fn test_tcp_bind_conflict_is_an_error() {
    let gw = Gateway::start();
    let s = serve(&localhost(), None, gw.handle.clone()).unwrap();
    let e = serve(s.local_addr(), None, gw.handle.clone()).unwrap_err();
    assert!(matches!(e, ApiError::Bind { .. }), "{e}");
    assert!(e.to_string().contains(&s.local_addr().to_string()), "{e}");
}

// --- Metrics ---------------------------------------------------------------------------------

/// One sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Checks the text exposition format line by line and returns the samples. Panics on a
/// malformed line, a sample before its family's TYPE, or a family split in two.
fn parse_exposition(text: &str) -> Vec<Sample> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut samples = Vec::new();
    let mut typed: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').unwrap();
            assert!(is_name(name), "{line}");
            assert!(!helped.contains(&name.to_owned()), "HELP twice: {line}");
            helped.push(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(is_name(name), "{line}");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(!typed.contains(&name.to_owned()), "TYPE twice: {line}");
            assert_eq!(helped.last().map(String::as_str), Some(name), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(is_name(name), "{line}");
        // Samples belong to the latest TYPE: families are contiguous.
        assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                let (label, r) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(is_name(label), "{line}");
                let mut value = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            other => panic!("bad escape {other:?}: {line}"),
                        },
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label: {line}"),
                    }
                };
                labels.push((label.to_owned(), value));
                rest = &r[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    rest = rest.strip_prefix('}').unwrap_or_else(|| panic!("{line}"));
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.2)
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

#[test]
fn test_metrics_exposition_matches_state() {
    let gw = Gateway::start();
    let api = serve(&localhost(), None, gw.handle.clone()).unwrap();
    let m = serve_metrics(&localhost(), gw.handle.clone()).unwrap();
    let r = get(&m, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    let samples = parse_exposition(&r.body);
    let groups = gw.groups();
    let st = &gw.stats();
    // Independent of the loop's own report: what the rig's traffic must have produced.
    assert_eq!(st.total.active_flows, FLOW_COUNT as u64);
    assert_eq!(st.total.new_flows, FLOW_COUNT as u64);
    assert_eq!(st.total.encapsulated, FLOW_COUNT as u64);

    assert_eq!(
        value(&samples, "gwlb_ActiveFlowCount", &[]),
        st.total.active_flows as f64
    );
    assert_eq!(
        value(&samples, "gwlb_NewFlowCount_total", &[]),
        st.total.new_flows as f64
    );
    assert_eq!(
        value(
            &samples,
            "gwlb_HealthyHostCount",
            &[("target_group", "firewalls")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "gwlb_UnHealthyHostCount",
            &[("target_group", "firewalls")]
        ),
        1.0
    );
    let fw_bytes: u64 = groups[0].targets.iter().map(|t| t.bytes).sum();
    assert_eq!(
        value(
            &samples,
            "gwlb_ProcessedBytes_total",
            &[("target_group", "firewalls")]
        ),
        fw_bytes as f64
    );
    let t = &groups[1].targets[0];
    assert_eq!(t.flows, 0, "inspection has no user port");
    let tl = [
        ("target_group", "inspection"),
        ("address", "fd00:2::21"),
        ("port", "appliance"),
    ];
    assert_eq!(
        value(&samples, "gwlb_target_packets_total", &tl),
        t.packets as f64
    );
    assert_eq!(
        value(&samples, "gwlb_target_bytes_total", &tl),
        t.bytes as f64
    );
    assert_eq!(
        value(&samples, "gwlb_target_flows_total", &tl),
        t.flows as f64
    );
    // Never probed (checks disabled in the rig): no latency to report.
    assert!(t.check_latency_ms.is_none());
    assert!(!samples
        .iter()
        .any(|(n, l, _)| n == "gwlb_health_check_latency_seconds"
            && l.iter().any(|(k, v)| k == "address" && v == "fd00:2::21")));
    let fl = [("target_group", "firewalls"), ("address", "10.0.2.12")];
    assert_eq!(
        value(
            &samples,
            "gwlb_target_state",
            &[fl[0], fl[1], ("state", "unhealthy")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "gwlb_target_state",
            &[fl[0], fl[1], ("state", "healthy")]
        ),
        0.0
    );
    for w in &st.workers {
        let wl = [("worker", &*w.worker.to_string())];
        assert_eq!(
            value(&samples, "gwlb_worker_rx_packets_total", &wl),
            w.rx as f64
        );
        assert_eq!(
            value(&samples, "gwlb_worker_tx_packets_total", &wl),
            w.tx as f64
        );
        assert_eq!(
            value(&samples, "gwlb_flow_table_active_flows", &wl),
            w.active_flows as f64
        );
        for (reason, n) in &w.drops {
            let l = [wl[0], ("reason", reason.as_str())];
            assert_eq!(value(&samples, "gwlb_worker_drops_total", &l), *n as f64);
        }
    }
    let ratio = st.total.active_flows as f64 / st.total.flow_table_capacity as f64;
    assert_eq!(
        value(&samples, "gwlb_flow_table_occupancy_ratio", &[]),
        ratio
    );

    // Live, not canned: a registration and a deregistration show at the next scrape.
    let r = with_body(
        &api,
        "POST",
        "/v1/target-groups/firewalls/targets",
        r#"{"address":"10.0.2.90","weight":3,"mac":"02:00:00:00:02:5a"}"#,
    );
    assert_eq!(r.status, 201);
    request(
        api.local_addr(),
        "DELETE",
        "/v1/target-groups/firewalls/targets/10.0.2.11",
        None,
        "",
    );
    let samples = parse_exposition(&get(&m, "/metrics").body);
    assert_eq!(
        value(
            &samples,
            "gwlb_HealthyHostCount",
            &[("target_group", "firewalls")]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "gwlb_target_weight", &[("address", "10.0.2.90")]),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "gwlb_target_drain_remaining_seconds",
            &[("address", "10.0.2.11")]
        ),
        120.0
    );

    let r = get(&m, "/v1/stats");
    assert_eq!(r.status, 404);
    let r = request(m.local_addr(), "POST", "/metrics", None, "");
    assert_eq!(r.status, 405);
}

/// [`control_rig::CONFIG`] with the `firewalls` health check on. The appliance port gets a
/// kernel interface, so probes bind its address (10.0.2.1), which this host does not have:
/// every probe is a local error, counted for nothing, and nothing leaves the machine. Its
/// targets therefore stay in whatever state registration and the injected events give them.
fn checked_rig_config() -> String {
    control_rig::CONFIG
        .replacen(
            "[target_groups.health_check]\nenabled = false\nprotocol = \"http\"",
            "[target_groups.health_check]\nenabled = true\nprotocol = \"http\"",
            1,
        )
        .replace(
            "address = [\"10.0.2.1/24\", \"fd00:2::1/64\"]",
            "address = [\"10.0.2.1/24\", \"fd00:2::1/64\"]\nkernel_interface = \"gwt-none0\"",
        )
}

/// Issue 18 through the API, the metrics and the real control loop: targets of a group with
/// its health check on start `initial` (the rig's flows found no healthy appliance and were
/// dropped), are neither healthy nor unhealthy, and turn healthy when their checks pass; a
/// registered one starts initial too, unless the group says `initial_state = "healthy"`.
#[test]
fn test_initial_targets_in_api_and_metrics() {
    let gw = Gateway::start_with(&checked_rig_config());
    let s = serve(&localhost(), None, gw.handle.clone()).unwrap();
    let m = serve_metrics(&localhost(), gw.handle.clone()).unwrap();
    let fw = |s: &ApiServer| -> Value { get(s, "/v1/target-groups/firewalls").json() };

    // 10.0.2.11 initial; 10.0.2.12 failed its checks (the rig's event): initial -> unhealthy.
    let g = fw(&s);
    assert_eq!(g["targets"][0]["state"], "initial", "{g}");
    assert_eq!(g["targets"][1]["state"], "unhealthy", "{g}");
    assert_eq!(
        (
            &g["healthy_count"],
            &g["unhealthy_count"],
            &g["initial_count"]
        ),
        (&json!(0), &json!(1), &json!(1)),
        "{g}"
    );
    assert_eq!(g["health_check"]["initial_state"], "initial");
    // The reason is the registration's until the first probe finishes, then that probe's
    // outcome: here a local error (the rig's host lacks 10.0.2.1), which changes no state.
    // Which one the test sees depends on when the checker's first round ran.
    let reason = g["targets"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason == "registered: no new flows until 3 consecutive health checks pass"
            || reason.starts_with("binding source 10.0.2.1: "),
        "{g}"
    );
    // No new flow went anywhere: fail-closed, no healthy appliance.
    let st = gw.stats();
    assert_eq!(st.total.new_flows, 0);
    assert_eq!(st.total.encapsulated, 0);
    assert_eq!(
        st.total.drops.get("no_healthy_appliance").copied(),
        Some(FLOW_COUNT as u64)
    );
    let samples = parse_exposition(&get(&m, "/metrics").body);
    let group = [("target_group", "firewalls")];
    assert_eq!(value(&samples, "gwlb_HealthyHostCount", &group), 0.0);
    assert_eq!(value(&samples, "gwlb_UnHealthyHostCount", &group), 1.0);
    assert_eq!(value(&samples, "gwlb_initial_host_count", &group), 1.0);
    assert_eq!(
        value(
            &samples,
            "gwlb_initial_host_count",
            &[("target_group", "inspection")]
        ),
        0.0,
        "a disabled check: healthy at once"
    );
    let t11 = [("target_group", "firewalls"), ("address", "10.0.2.11")];
    for (state, want) in [("initial", 1.0), ("healthy", 0.0), ("unhealthy", 0.0)] {
        let mut labels = t11.to_vec();
        labels.push(("state", state));
        assert_eq!(
            value(&samples, "gwlb_target_state", &labels),
            want,
            "{state}"
        );
    }

    // Its checks pass.
    gw.report_health("firewalls", 0, "10.0.2.11".parse().unwrap(), true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fw(&s)["targets"][0]["state"] != "healthy" {
        assert!(std::time::Instant::now() < deadline, "{}", fw(&s));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let g = fw(&s);
    assert_eq!(
        (
            &g["healthy_count"],
            &g["unhealthy_count"],
            &g["initial_count"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{g}"
    );

    // Registered by the API: initial, then with initial_state = "healthy": healthy at once.
    let r = with_body(
        &s,
        "POST",
        "/v1/target-groups/firewalls/targets",
        r#"{"address": "10.0.2.13", "mac": "02:00:00:00:02:0d"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["state"], "initial", "{}", r.body);
    let r = with_body(
        &s,
        "PATCH",
        "/v1/target-groups/firewalls/health-check",
        r#"{"initial_state": "sometimes"}"#,
    );
    assert_eq!(
        (r.status, r.field().as_str()),
        (400, "initial_state"),
        "{}",
        r.body
    );
    let r = with_body(
        &s,
        "PATCH",
        "/v1/target-groups/firewalls/health-check",
        r#"{"initial_state": "healthy"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["health_check"]["initial_state"],
        "healthy",
        "{}",
        r.body
    );
    let r = with_body(
        &s,
        "POST",
        "/v1/target-groups/firewalls/targets",
        r#"{"address": "10.0.2.14", "mac": "02:00:00:00:02:0e"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["state"], "healthy", "{}", r.body);
    let states: Vec<Value> = fw(&s)["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].clone())
        .collect();
    assert_eq!(
        states,
        [
            json!("healthy"),
            json!("unhealthy"),
            json!("initial"),
            json!("healthy")
        ],
        "a setting for later registrations: .13 stays initial"
    );
}

#[test]
fn test_metrics_on_unix_socket() {
    let gw = Gateway::start();
    let listen = Listen::Unix(temp_socket("metrics.sock"));
    let m = serve_metrics(&listen, gw.handle.clone()).unwrap();
    let r = get(&m, "/metrics");
    assert_eq!(r.status, 200);
    assert!(!parse_exposition(&r.body).is_empty());
}

#[test]
fn test_json_errors_are_objects() {
    let (_gw, s) = start();
    let r = with_body(&s, "POST", "/v1/target-groups/firewalls/targets", "[1,2]");
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(
        v,
        json!({"error": {"kind": "invalid", "field": "body", "message": v["error"]["message"]}})
    );
    assert_eq!(v["error"]["message"], "expected a JSON object");
}

/// One peer address cannot hold every connection: past `max_connections_per_peer` its
/// connections get `503` (and are closed), while another address is still served.
#[test]
fn test_one_peer_cannot_take_every_connection() {
    use gwlb::api::server::{start as start_listener, Limits, Reply as Answer};
    use socket2::{Domain, Socket, Type};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    let limits = Limits {
        max_connections_per_peer: 3,
        ..Limits::default()
    };
    let server = start_listener(
        &localhost(),
        "test",
        None,
        Arc::new(|_| Answer::json(200, &"ok")),
        limits,
    )
    .unwrap();
    let Listen::Tcp(addr) = *server.local_addr() else {
        unreachable!()
    };
    let from = |src: [u8; 4]| -> TcpStream {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let bind: std::net::SocketAddr = (std::net::Ipv4Addr::from(src), 0).into();
        s.bind(&bind.into()).unwrap();
        s.connect(&addr.into()).unwrap();
        s.into()
    };
    let status = |mut s: TcpStream| -> u16 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        raw.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    };
    // Three idle connections from 127.0.0.1 are held; once the server counted them, a fourth
    // from the same address is refused.
    let idle: Vec<TcpStream> = (0..3).map(|_| from([127, 0, 0, 1])).collect();
    let t0 = std::time::Instant::now();
    while server.stats().open.load(Relaxed) < 3 {
        assert!(t0.elapsed().as_secs() < 10, "idle connections not counted");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(status(from([127, 0, 0, 1])), 503);
    assert_eq!(server.stats().refused_peer.load(Relaxed), 1);
    // Another address is served meanwhile.
    assert_eq!(status(from([127, 0, 0, 2])), 200);
    // The first address gets its connections back as its idle ones close.
    drop(idle);
    let t0 = std::time::Instant::now();
    while server.stats().open.load(Relaxed) > 0 {
        assert!(
            t0.elapsed().as_secs() < 10,
            "closed connections still counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(status(from([127, 0, 0, 1])), 200);
}

/// Fail-open below the health minimum through the control loop: with
/// `on_below_minimum = "fail_open"` and `min_healthy_targets = 2`, the rig's start (10.0.2.12
/// unhealthy) leaves "firewalls" below its minimum, so it fails open (the API and the
/// metrics say so, and both its targets take new flows); 10.0.2.12 healthy again ends it.
#[test]
fn test_group_fail_open_shows_in_the_api_and_the_metrics() {
    let config = control_rig::CONFIG.replace(
        "on_all_unhealthy = \"fail_closed\"\n",
        "on_all_unhealthy = \"fail_closed\"\non_below_minimum = \"fail_open\"\nmin_healthy_targets = 2\n",
    );
    assert_ne!(config, control_rig::CONFIG);
    let gw = Gateway::start_with(&config);
    let api = serve(&localhost(), None, gw.handle.clone()).unwrap();
    let m = serve_metrics(&localhost(), gw.handle.clone()).unwrap();
    let failed_open =
        |s: &ApiServer| get(s, "/v1/target-groups/firewalls").json()["failed_open"].clone();
    let metric = |m: &ApiServer| {
        value(
            &parse_exposition(&get(m, "/metrics").body),
            "gwlb_target_group_failed_open",
            &[("target_group", "firewalls")],
        )
    };
    let g = get(&api, "/v1/target-groups/firewalls").json();
    assert_eq!(
        (
            &g["on_below_minimum"],
            &g["min_healthy_targets"],
            &g["failed_open"],
            &g["failed_over"],
            &g["healthy_count"],
        ),
        (
            &json!("fail_open"),
            &json!(2),
            &json!(true),
            &json!(false),
            &json!(1)
        ),
        "{g}"
    );
    assert_eq!(metric(&m), 1.0);
    let other = get(&api, "/v1/target-groups/inspection").json();
    assert_eq!(
        (&other["on_below_minimum"], &other["failed_open"]),
        (&json!("serve_remaining"), &json!(false))
    );
    gw.report_health("firewalls", 1, "10.0.2.12".parse().unwrap(), true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while failed_open(&api) != json!(false) {
        assert!(std::time::Instant::now() < deadline, "still failed open");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(metric(&m), 0.0);
}

/// AWS's `TCP_ELB_Reset_Count` the real way: a TCP packet without a flow, in a group with
/// `tcp_unknown_non_syn = "reset"`, is answered with a RST by worker 0's pipeline; the
/// worker publishes its counters, the control loop sums them, and the metrics endpoint
/// exports the sum under AWS's name beside gwlb's own per-worker series.
#[test]
fn test_tcp_elb_reset_count_comes_from_the_workers_counters() {
    let config = control_rig::CONFIG.replace(
        "on_all_unhealthy = \"fail_closed\"\n",
        "on_all_unhealthy = \"fail_closed\"\ntcp_unknown_non_syn = \"reset\"\n",
    );
    assert_ne!(config, control_rig::CONFIG);
    // An ACK of a connection the gateway has never seen, from a client of the user port.
    let mut ack = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 0, 0xa1])
        .ipv4([10, 1, 5, 5], [10, 9, 0, 1], 64)
        .tcp(12345, 80, 7, 1000)
        .ack(1)
        .write(&mut ack, b"data")
        .unwrap();
    let gw = Gateway::start_with_frames(&config, vec![ack]);
    let m = serve_metrics(&localhost(), gw.handle.clone()).unwrap();
    let samples = parse_exposition(&get(&m, "/metrics").body);
    assert_eq!(value(&samples, "gwlb_TCP_ELB_Reset_Count_total", &[]), 1.0);
    assert_eq!(
        value(&samples, "gwlb_worker_tcp_resets_total", &[("worker", "0")]),
        1.0
    );
    assert_eq!(
        value(&samples, "gwlb_worker_tcp_resets_total", &[("worker", "1")]),
        0.0
    );
    let st = gw.stats();
    assert_eq!(st.total.tcp_resets, 1);
    assert_eq!(st.workers[0].tcp_resets, 1);
}

/// Group failover through the control loop: with `min_healthy_targets = 2`, the rig's start
/// (10.0.2.12 unhealthy) leaves "firewalls" below its minimum, so it fails over to
/// "inspection" (the API and the metrics say so); 10.0.2.12 healthy again ends it.
#[test]
fn test_group_failover_shows_in_the_api_and_the_metrics() {
    let config = control_rig::CONFIG
        .replace(
            "on_all_unhealthy = \"fail_closed\"\n",
            "on_all_unhealthy = \"fail_closed\"\nfailover_group = \"inspection\"\nmin_healthy_targets = 2\n",
        )
        .replace("stickiness = \"2-tuple\"", "stickiness = \"5-tuple\"");
    let gw = Gateway::start_with(&config);
    let api = serve(&localhost(), None, gw.handle.clone()).unwrap();
    let m = serve_metrics(&localhost(), gw.handle.clone()).unwrap();
    let failed_over =
        |s: &ApiServer| get(s, "/v1/target-groups/firewalls").json()["failed_over"].clone();
    let metric = |m: &ApiServer| {
        value(
            &parse_exposition(&get(m, "/metrics").body),
            "gwlb_target_group_failed_over",
            &[("target_group", "firewalls")],
        )
    };
    let g = get(&api, "/v1/target-groups/firewalls").json();
    assert_eq!(
        (
            &g["failover_group"],
            &g["min_healthy_targets"],
            &g["failed_over"]
        ),
        (&json!("inspection"), &json!(2), &json!(true)),
        "{g}"
    );
    assert_eq!(metric(&m), 1.0);
    assert_eq!(
        get(&api, "/v1/target-groups/inspection").json()["failed_over"],
        json!(false)
    );
    gw.report_health("firewalls", 1, "10.0.2.12".parse().unwrap(), true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while failed_over(&api) != json!(false) {
        assert!(std::time::Instant::now() < deadline, "still failed over");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(metric(&m), 0.0);
}

/// The mirror session `name` of `GET /v1/mirror-sessions`.
fn mirror(s: &ApiServer, name: &str) -> Value {
    let r = get(s, "/v1/mirror-sessions");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Frames of flows `from..` (even: to port 80, odd: to port 443): `web` to port 80, `tls` to
/// port 443.
fn web_and_tls(from: usize, web: usize, tls: usize) -> Vec<Vec<u8>> {
    let even = (from..).filter(|i| i % 2 == 0).take(web);
    let odd = (from..).filter(|i| i % 2 == 1).take(tls);
    even.chain(odd).map(control_rig::flow_packet).collect()
}

#[test]
fn test_mirror_sessions_change_live_and_keep_their_counters() {
    let (gw, s) = start();
    let m = serve_metrics(&localhost(), gw.handle.clone()).unwrap();
    // An IPv4 sensor in the pool without user ports.
    let r = with_body(
        &s,
        "POST",
        "/v1/target-groups/inspection/targets",
        r#"{"address": "10.0.2.31", "mac": "02:00:00:00:02:31"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // The IPv6 one gets no copies (it would count them as no_sensor): out of the pool.
    let r = with_body(
        &s,
        "PATCH",
        "/v1/target-groups/inspection/targets/fd00:2::21",
        r#"{"weight": 0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let r = with_body(
        &s,
        "POST",
        "/v1/mirror-sessions",
        r#"{"name": "web", "target_group": "inspection", "vni": 100, "l4_ports": ["80"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let web = r.json();
    assert_eq!(web["vni"], 100);
    assert_eq!(
        web["settings"]["sample_one_in"], 1,
        "defaults filled in: {web}"
    );
    assert_eq!(web["settings"]["l4_ports"], json!(["80-80"]));
    let r = with_body(
        &s,
        "POST",
        "/v1/mirror-sessions",
        r#"{"name": "tls", "target_group": "inspection", "l4_ports": ["443"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = with_body(
        &s,
        "POST",
        "/v1/mirror-sessions",
        r#"{"name": "web", "target_group": "inspection"}"#,
    );
    assert_eq!((r.status, r.kind()), (409, "conflict".into()), "{}", r.body);

    // Refused, naming the request's own field; nothing changes.
    let before = (gw.stats(), get(&s, "/v1/mirror-sessions").body);
    for (body, field) in [
        (
            r#"{"name": "x", "target_group": "inspection", "sample_one_in": 0}"#,
            "sample_one_in",
        ),
        (
            r#"{"name": "x", "target_group": "inspection", "sampel": 1}"#,
            "sampel",
        ),
        (
            r#"{"name": "x", "target_group": "firewalls"}"#,
            "target_group",
        ),
        (
            r#"{"name": "x", "target_group": "inspection", "l4_ports": ["99999"]}"#,
            "l4_ports[0]",
        ),
        (r#"{"target_group": "inspection"}"#, "name"),
    ] {
        let r = with_body(&s, "POST", "/v1/mirror-sessions", body);
        assert_eq!(
            (r.status, r.field()),
            (400, field.into()),
            "{body}: {}",
            r.body
        );
    }
    assert_eq!((gw.stats(), get(&s, "/v1/mirror-sessions").body), before);

    // Copies are counted per session.
    gw.send(0, web_and_tls(400, 10, 6));
    assert_eq!(mirror(&s, "web")["packets"], 10);
    assert_eq!(mirror(&s, "tls")["packets"], 6);
    let r = get(&s, "/v1/mirror-sessions/tls");
    assert_eq!(
        (r.status, r.json()["packets"].clone()),
        (200, json!(6)),
        "{}",
        r.body
    );
    assert_eq!(get(&s, "/v1/mirror-sessions/nope").status, 404);

    // A change keeps the session's counters; a bad one changes nothing (not even the
    // snapshot's generation).
    let r = with_body(
        &s,
        "PATCH",
        "/v1/mirror-sessions/tls",
        r#"{"sample_one_in": 2}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["sample_one_in"].clone(),
            r.json()["packets"].clone()
        ),
        (json!(2), json!(6))
    );
    let before = (gw.stats(), get(&s, "/v1/mirror-sessions").body);
    for (method, body, status, field) in [
        ("PATCH", r#"{"sample_one_in": 0}"#, 400, "sample_one_in"),
        ("PATCH", r#"{"sample_one_in": "two"}"#, 400, "sample_one_in"),
        ("PATCH", r#"{"snap_length": 10}"#, 400, "snap_length"),
        ("PATCH", r#"{"name": "web2"}"#, 400, "name"),
        ("PATCH", r#"{}"#, 400, "body"),
        (
            "PUT",
            r#"{"name": "tls", "target_group": "nope"}"#,
            400,
            "target_group",
        ),
        ("PUT", r#"{"name": "tls"}"#, 400, "target_group"),
    ] {
        let r = with_body(&s, method, "/v1/mirror-sessions/tls", body);
        assert_eq!(
            (r.status, r.field()),
            (status, field.into()),
            "{method} {body}: {}",
            r.body
        );
    }
    let r = with_body(&s, "PATCH", "/v1/mirror-sessions/nope", r#"{"vni": 1}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!((gw.stats(), get(&s, "/v1/mirror-sessions").body), before);
    assert_eq!(mirror(&s, "tls")["settings"]["sample_one_in"], 2);

    // Deleting the first session leaves the second's counters with it (not the first's
    // under the second's name).
    let r = request(
        s.local_addr(),
        "DELETE",
        "/v1/mirror-sessions/web",
        None,
        "",
    );
    assert_eq!(
        (r.status, r.json()["packets"].clone()),
        (200, json!(10)),
        "{}",
        r.body
    );
    assert_eq!(get(&s, "/v1/mirror-sessions/web").status, 404);
    gw.send(0, web_and_tls(500, 4, 4));
    let tls = mirror(&s, "tls");
    assert_eq!(tls["packets"], 6 + 2, "1 in 2 of 4 more: {tls}");
    assert_eq!(
        get(&s, "/v1/mirror-sessions")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A session created again starts from zero.
    let r = with_body(
        &s,
        "PUT",
        "/v1/mirror-sessions/tls",
        r#"{"name": "tls", "target_group": "inspection", "l4_ports": ["443"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["sample_one_in"].clone(),
            r.json()["packets"].clone()
        ),
        (json!(1), json!(8))
    );
    let r = with_body(
        &s,
        "POST",
        "/v1/mirror-sessions",
        r#"{"name": "web", "target_group": "inspection", "l4_ports": ["80"]}"#,
    );
    assert_eq!(
        (r.status, r.json()["packets"].clone()),
        (201, json!(0)),
        "{}",
        r.body
    );
    gw.send(0, web_and_tls(600, 3, 0));
    assert_eq!(mirror(&s, "web")["packets"], 3);
    assert_eq!(mirror(&s, "tls")["packets"], 8);

    // Prometheus: per-session counters and the sampling gauge.
    let samples = parse_exposition(&get(&m, "/metrics").body);
    assert_eq!(
        value(&samples, "gwlb_mirror_packets_total", &[("session", "tls")]),
        8.0
    );
    assert_eq!(
        value(&samples, "gwlb_mirror_packets_total", &[("session", "web")]),
        3.0
    );
    assert_eq!(
        value(&samples, "gwlb_mirror_sample_one_in", &[("session", "tls")]),
        1.0
    );
    let r = with_body(
        &s,
        "PATCH",
        "/v1/mirror-sessions/web",
        r#"{"sample_one_in": 8}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let samples = parse_exposition(&get(&m, "/metrics").body);
    assert_eq!(
        value(&samples, "gwlb_mirror_sample_one_in", &[("session", "web")]),
        8.0
    );

    // A reload puts back the file's sessions (none): the file wins, as for targets.
    let r = request(s.local_addr(), "POST", "/v1/reload", None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["changed"]
            .as_array()
            .unwrap()
            .contains(&json!("mirror_sessions")),
        "{}",
        r.body
    );
    assert_eq!(get(&s, "/v1/mirror-sessions").json(), json!([]));
}

/// The rig's configuration with its user port given to endpoint `a` (untagged: every frame
/// there), whose rule `web` sends port 80 to `firewalls`, as its default does the rest.
fn endpoint_config() -> String {
    control_rig::CONFIG.replacen("user_ports = [\"user\"]", "user_ports = []", 1)
        + r#"
[[endpoints]]
name = "a"
ports = ["user"]
target_group = "firewalls"
[[endpoints.rules]]
name = "web"
protocols = [6]
destination_ports = ["80"]
action = "inspect"
target_group = "firewalls"
"#
}

/// (name, packets, flows) of each rule of an endpoint, and the endpoint's (packets, flows).
type RuleCounts = (Vec<(String, u64, u64)>, (u64, u64));

/// The [`RuleCounts`] of endpoint `name`.
fn rules_of(s: &ApiServer, name: &str) -> RuleCounts {
    let r = get(s, &format!("/v1/endpoints/{name}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.json();
    let rules = e["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["packets"].as_u64().unwrap(),
                r["flows"].as_u64().unwrap(),
            )
        })
        .collect();
    (
        rules,
        (e["packets"].as_u64().unwrap(), e["flows"].as_u64().unwrap()),
    )
}

#[test]
fn test_endpoints_and_rules_change_live_and_keep_their_counters() {
    let gw = Gateway::start_with(&endpoint_config());
    let s = serve(&localhost(), None, gw.handle.clone()).unwrap();
    let half = (FLOW_COUNT / 2) as u64;
    let web_ssh = |r: &RuleCounts| r.0.clone();
    let start = rules_of(&s, "a");
    assert_eq!(
        web_ssh(&start),
        [("web".into(), half, half), ("default".into(), half, half)],
        "the rig's flows: half to port 80"
    );

    // A rule put before `web`: `web` keeps its counters (it moved to another index).
    let r = with_body(
        &s,
        "PUT",
        "/v1/endpoints/a/rules",
        r#"[{"name": "ssh", "protocols": [6], "destination_ports": ["22"], "action": "drop"},
            {"name": "web", "protocols": [6], "destination_ports": ["80"], "action": "inspect", "target_group": "firewalls"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let after = rules_of(&s, "a");
    assert_eq!(
        web_ssh(&after),
        [
            ("ssh".into(), 0, 0),
            ("web".into(), half, half),
            ("default".into(), half, half)
        ]
    );
    assert_eq!(after.1, start.1, "the endpoint's totals");
    // New flows follow the new rules and count under them.
    gw.send(0, (2000..2006).map(control_rig::flow_packet).collect());
    let (rules, _) = rules_of(&s, "a");
    assert_eq!(rules[1], ("web".into(), half + 3, half + 3), "{rules:?}");
    assert_eq!(
        rules[2],
        ("default".into(), half + 3, half + 3),
        "{rules:?}"
    );

    // Refused changes name the request's own field and change nothing.
    let before = (gw.stats(), get(&s, "/v1/endpoints").body);
    for (method, path, body, status, field) in [
        (
            "PATCH",
            "/v1/endpoints/a",
            r#"{"default_action": "jump"}"#,
            400,
            "default_action",
        ),
        (
            "PATCH",
            "/v1/endpoints/a",
            r#"{"vlan": [5000]}"#,
            400,
            "vlan[0]",
        ),
        (
            "PATCH",
            "/v1/endpoints/a",
            r#"{"ports": ["appliance"]}"#,
            400,
            "ports[0]",
        ),
        ("PATCH", "/v1/endpoints/a", r#"{"name": "b"}"#, 400, "name"),
        (
            "PATCH",
            "/v1/endpoints/a",
            r#"{"colour": 1}"#,
            400,
            "colour",
        ),
        (
            "PUT",
            "/v1/endpoints/a/rules",
            r#"[{"name": "x", "action": "inspect"}]"#,
            400,
            "rules[0].target_group",
        ),
        (
            "PUT",
            "/v1/endpoints/a/rules",
            r#"[{"name": "x", "action": 3}]"#,
            400,
            "rules[0].action",
        ),
        (
            "PUT",
            "/v1/endpoints/a/rules",
            r#"{"name": "x"}"#,
            400,
            "body",
        ),
        (
            "POST",
            "/v1/endpoints/a/rules",
            r#"{"name": "x", "action": "drop", "tcp_reset": 1}"#,
            400,
            "tcp_reset",
        ),
        (
            "POST",
            "/v1/endpoints/a/rules",
            r#"{"name": "x", "action": "drop", "destination_ports": ["1-2-3"]}"#,
            400,
            "destination_ports[0]",
        ),
    ] {
        let r = with_body(&s, method, path, body);
        assert_eq!(
            (r.status, r.field()),
            (status, field.into()),
            "{method} {path} {body}: {}",
            r.body
        );
    }
    let r = with_body(
        &s,
        "POST",
        "/v1/endpoints/a/rules",
        r#"{"name": "web", "action": "bypass"}"#,
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = with_body(
        &s,
        "POST",
        "/v1/endpoints",
        r#"{"name": "a", "ports": ["user"], "target_group": "firewalls"}"#,
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(get(&s, "/v1/endpoints/nope").status, 404);
    let r = request(
        s.local_addr(),
        "DELETE",
        "/v1/endpoints/a/rules/nope",
        None,
        "",
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // Two untagged endpoints on one port without disjoint prefixes: refused.
    let r = with_body(
        &s,
        "POST",
        "/v1/endpoints",
        r#"{"name": "b", "ports": ["user"], "target_group": "firewalls"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!((gw.stats(), get(&s, "/v1/endpoints").body), before);

    // A second endpoint before... after `a`, then `a` removed: `b`'s counters are its own
    // (they were at higher indices; none of `a`'s show up under `b`).
    let r = with_body(
        &s,
        "POST",
        "/v1/endpoints",
        r#"{"name": "b", "ports": ["user"], "vlan": [100], "target_group": "inspection",
            "routes": [{"prefix": "0.0.0.0/0", "via": "10.1.0.254", "mac": "02:00:00:00:01:fe"}],
            "rules": [{"name": "all", "action": "bypass"}]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["settings"]["vlan"], json!([100]), "{}", r.body);
    let r = request(
        s.local_addr(),
        "DELETE",
        "/v1/endpoints/a/rules/ssh",
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        web_ssh(&rules_of(&s, "a"))[0],
        ("web".into(), half + 3, half + 3)
    );
    let r = request(s.local_addr(), "DELETE", "/v1/endpoints/a", None, "");
    assert_eq!(
        (r.status, r.json()["flows"].clone()),
        (200, json!(2 * half + 6)),
        "{}",
        r.body
    );
    assert_eq!(
        web_ssh(&rules_of(&s, "b")),
        [("all".into(), 0, 0), ("default".into(), 0, 0)]
    );
    let r = with_body(
        &s,
        "PATCH",
        "/v1/endpoints/b",
        r#"{"default_action": "drop", "target_group": null}"#,
    );
    assert_eq!(
        (r.status, r.json()["rules"][1]["action"].clone()),
        (200, json!("drop")),
        "{}",
        r.body
    );

    // A reload puts back the file's endpoints: `a` again, `b` gone.
    let r = request(s.local_addr(), "POST", "/v1/reload", None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<String> = gw
        .stats()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["a"]);
}
