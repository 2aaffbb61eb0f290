//! The routes of the control API, version 1. Each one checks its input (path segments, query
//! parameters, JSON body with unknown fields refused), then makes one
//! [`ControlHandle`] call; the control loop applies a change whole or not at all.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/v1/target-groups` | every group with its targets |
//! | GET | `/v1/target-groups/{name}` | one group |
//! | GET, POST | `/v1/target-groups/{name}/targets` | its targets; register one |
//! | GET, PATCH, DELETE | `/v1/target-groups/{name}/targets/{address}` | one target; re-weight; deregister |
//! | GET, PATCH | `/v1/target-groups/{name}/health-check` | the health check; change it |
//! | GET, POST | `/v1/mirror-sessions` | every mirror session; create one |
//! | GET, PUT, PATCH, DELETE | `/v1/mirror-sessions/{name}` | one session; replace it; change some of its settings; remove it |
//! | GET, POST | `/v1/endpoints` | every endpoint; create one |
//! | GET, PUT, PATCH, DELETE | `/v1/endpoints/{name}` | one endpoint; replace it; change some of its settings; remove it |
//! | GET, PUT, POST | `/v1/endpoints/{name}/rules` | its rules; replace the ordered list; append one |
//! | DELETE | `/v1/endpoints/{name}/rules/{rule}` | remove one rule |
//! | GET | `/v1/stats` | counters |
//! | GET | `/v1/flows` | a page of flows |
//! | POST | `/v1/reload` | reload the configuration file |
//! | GET, POST, DELETE | `/v1/drain` | the drain's state; start draining; stop draining |

use std::borrow::Cow;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::http_error::HttpError;
use super::server::{ApiRequest, Reply};
use crate::control::{
    Change, ControlHandle, DrainAction, EndpointSpec, FlowQuery, HealthCheckPatch,
    MirrorSessionSpec, RuleSpec, RulesChange, TargetGroupInfo, TargetSpec, MAX_FLOW_PAGE,
};

/// Body of `PATCH /v1/target-groups/{name}/targets/{address}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightChange {
    /// New weight, 0..=1000.
    pub weight: u16,
}

/// The control API's routes over one [`ControlHandle`].
#[derive(Debug, Clone)]
pub struct Routes {
    handle: ControlHandle,
}

impl Routes {
    /// Routes answering through `handle`.
    pub fn new(handle: ControlHandle) -> Routes {
        Routes { handle }
    }

    /// Answers one request; errors become JSON error replies.
    pub fn handle(&self, req: &ApiRequest) -> Reply {
        match self.route(req) {
            Ok(reply) => reply,
            Err(RouteError::Http(e)) => Reply::error(&e),
            Err(RouteError::Method(allowed)) => {
                let mut reply = Reply::error(&HttpError::method_not_allowed(&req.method, allowed));
                reply.allow = Some(allowed.join(", "));
                reply
            }
        }
    }

    fn route(&self, req: &ApiRequest) -> Result<Reply, RouteError> {
        let segments = segments(&req.path)?;
        let segs: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
        let method = req.method.as_str();
        match segs.as_slice() {
            ["v1", "target-groups"] => {
                allow(method, &["GET"])?;
                no_query(req)?;
                Ok(Reply::json(200, &self.handle.list_groups()?))
            }
            ["v1", "mirror-sessions"] => {
                allow(method, &["GET", "POST"])?;
                no_query(req)?;
                if method == "GET" {
                    return Ok(Reply::json(200, &self.handle.stats()?.mirror_sessions));
                }
                let spec: MirrorSessionSpec = decode_body(&req.body)?;
                let session = self.handle.create_mirror(spec)?;
                tracing::info!(
                    session = %session.name, peer = %req.peer,
                    "mirror session created through the API"
                );
                Ok(Reply::json(201, &session))
            }
            ["v1", "mirror-sessions", name] => {
                allow(method, &["GET", "PUT", "PATCH", "DELETE"])?;
                no_query(req)?;
                let session = match method {
                    "GET" => self
                        .handle
                        .stats()?
                        .mirror_sessions
                        .into_iter()
                        .find(|m| m.name == *name)
                        .ok_or_else(|| {
                            HttpError::not_found(format!("mirror session {name:?} not found"))
                        })?,
                    "DELETE" => self.handle.delete_mirror(name)?,
                    _ => {
                        let change = change_body(method, &req.body)?;
                        self.handle.change_mirror(name, change)?
                    }
                };
                if method != "GET" {
                    tracing::info!(
                        session = %name, method, peer = %req.peer,
                        "mirror session changed through the API"
                    );
                }
                Ok(Reply::json(200, &session))
            }
            ["v1", "endpoints"] => {
                allow(method, &["GET", "POST"])?;
                no_query(req)?;
                if method == "GET" {
                    return Ok(Reply::json(200, &self.handle.stats()?.endpoints));
                }
                let spec: EndpointSpec = decode_body(&req.body)?;
                let ep = self.handle.create_endpoint(spec)?;
                tracing::info!(endpoint = %ep.name, peer = %req.peer, "endpoint created through the API");
                Ok(Reply::json(201, &ep))
            }
            ["v1", "endpoints", name] => {
                allow(method, &["GET", "PUT", "PATCH", "DELETE"])?;
                no_query(req)?;
                let ep = match method {
                    "GET" => self.endpoint(name)?,
                    "DELETE" => self.handle.delete_endpoint(name)?,
                    _ => {
                        let change = change_body(method, &req.body)?;
                        self.handle.change_endpoint(name, change)?
                    }
                };
                if method != "GET" {
                    tracing::info!(endpoint = %name, method, peer = %req.peer, "endpoint changed through the API");
                }
                Ok(Reply::json(200, &ep))
            }
            ["v1", "endpoints", name, "rules"] => {
                allow(method, &["GET", "PUT", "POST"])?;
                no_query(req)?;
                let ep = match method {
                    "GET" => return Ok(Reply::json(200, &self.endpoint(name)?.rules)),
                    "PUT" => {
                        let rules: Vec<RuleSpec> = decode_list("rules", &req.body)?;
                        self.handle
                            .change_rules(name, RulesChange::Replace(rules))?
                    }
                    _ => {
                        let rule: RuleSpec = decode_body(&req.body)?;
                        self.handle.change_rules(name, RulesChange::Append(rule))?
                    }
                };
                tracing::info!(endpoint = %name, method, peer = %req.peer, "steering rules changed through the API");
                Ok(Reply::json(if method == "POST" { 201 } else { 200 }, &ep))
            }
            ["v1", "endpoints", name, "rules", rule] => {
                allow(method, &["DELETE"])?;
                no_query(req)?;
                let ep = self
                    .handle
                    .change_rules(name, RulesChange::Remove((*rule).to_owned()))?;
                tracing::info!(endpoint = %name, rule = %rule, peer = %req.peer, "steering rule removed through the API");
                Ok(Reply::json(200, &ep))
            }
            ["v1", "target-groups", group] => {
                allow(method, &["GET"])?;
                no_query(req)?;
                Ok(Reply::json(200, &self.group(group)?))
            }
            ["v1", "target-groups", group, "targets"] => {
                allow(method, &["GET", "POST"])?;
                no_query(req)?;
                if method == "GET" {
                    return Ok(Reply::json(200, &self.group(group)?.targets));
                }
                let spec: TargetSpec = decode_body(&req.body)?;
                let target = self.handle.register(group, spec)?;
                tracing::info!(
                    group = %group, address = %target.address, weight = target.weight,
                    port = %target.port, peer = %req.peer, "target registered through the API"
                );
                Ok(Reply::json(201, &target))
            }
            ["v1", "target-groups", group, "targets", address] => {
                allow(method, &["GET", "PATCH", "DELETE"])?;
                no_query(req)?;
                let address = parse_address(address)?;
                match method {
                    "GET" => {
                        let target = self
                            .group(group)?
                            .targets
                            .into_iter()
                            .find(|t| t.address == address)
                            .ok_or_else(|| {
                                HttpError::not_found(format!(
                                    "target {address} of target group {group:?} not found"
                                ))
                            })?;
                        Ok(Reply::json(200, &target))
                    }
                    "PATCH" => {
                        let change: WeightChange = decode_body(&req.body)?;
                        let target = self.handle.set_weight(group, address, change.weight)?;
                        tracing::info!(
                            group = %group, address = %address, weight = change.weight,
                            peer = %req.peer, "target weight changed through the API"
                        );
                        Ok(Reply::json(200, &target))
                    }
                    _ => {
                        let target = self.handle.deregister(group, address)?;
                        tracing::info!(
                            group = %group, address = %address, peer = %req.peer,
                            drain_s = target.drain_remaining_s,
                            "target deregistered through the API; draining"
                        );
                        Ok(Reply::json(200, &target))
                    }
                }
            }
            ["v1", "target-groups", group, "health-check"] => {
                allow(method, &["GET", "PATCH"])?;
                no_query(req)?;
                if method == "GET" {
                    return Ok(Reply::json(200, &self.group(group)?.health_check));
                }
                let patch: HealthCheckPatch = decode_body(&req.body)?;
                if patch == HealthCheckPatch::default() {
                    return Err(
                        HttpError::invalid("body", "no health-check setting to change").into(),
                    );
                }
                let changed = format!("{patch:?}");
                let info = self.handle.set_health_check(group, patch)?;
                tracing::info!(
                    group = %group, change = %changed, peer = %req.peer,
                    "health check changed through the API"
                );
                Ok(Reply::json(200, &info))
            }
            ["v1", "version"] => {
                allow(method, &["GET"])?;
                no_query(req)?;
                Ok(Reply::json(200, &crate::build_info::BuildInfo::current()))
            }
            ["v1", "stats"] => {
                allow(method, &["GET"])?;
                no_query(req)?;
                Ok(Reply::json(200, &self.handle.stats()?))
            }
            ["v1", "flows"] => {
                allow(method, &["GET"])?;
                let query = flow_query(req.query.as_deref().unwrap_or(""))?;
                Ok(Reply::json(200, &self.handle.flows(query)?))
            }
            ["v1", "reload"] => {
                allow(method, &["POST"])?;
                no_query(req)?;
                let report = self.handle.reload()?;
                tracing::info!(
                    file = %report.file, registered = ?report.registered,
                    deregistered = ?report.deregistered, reweighted = ?report.reweighted,
                    changed = ?report.changed, peer = %req.peer,
                    "configuration reloaded through the API"
                );
                Ok(Reply::json(200, &report))
            }
            ["v1", "drain"] => {
                allow(method, &["GET", "POST", "DELETE"])?;
                no_query(req)?;
                let action = match method {
                    "POST" => DrainAction::Start,
                    "DELETE" => DrainAction::Stop,
                    _ => DrainAction::Status,
                };
                let report = self.handle.drain(action)?;
                if action != DrainAction::Status {
                    tracing::info!(?action, peer = %req.peer, "drain through the API");
                }
                Ok(Reply::json(200, &report))
            }
            _ => Err(HttpError::not_found(format!("no route {}", req.path)).into()),
        }
    }

    fn endpoint(&self, name: &str) -> Result<crate::control::EndpointReport, HttpError> {
        self.handle
            .stats()?
            .endpoints
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| HttpError::not_found(format!("endpoint {name:?} not found")))
    }

    fn group(&self, name: &str) -> Result<TargetGroupInfo, HttpError> {
        self.handle
            .list_groups()?
            .into_iter()
            .find(|g| g.name == name)
            .ok_or_else(|| HttpError::not_found(format!("target group {name:?} not found")))
    }
}

enum RouteError {
    Http(HttpError),
    /// 405; the methods the route takes.
    Method(&'static [&'static str]),
}

impl From<HttpError> for RouteError {
    fn from(e: HttpError) -> Self {
        RouteError::Http(e)
    }
}

impl From<crate::control::ControlError> for RouteError {
    fn from(e: crate::control::ControlError) -> Self {
        RouteError::Http(e.into())
    }
}

fn allow(method: &str, allowed: &'static [&'static str]) -> Result<(), RouteError> {
    if allowed.contains(&method) {
        Ok(())
    } else {
        Err(RouteError::Method(allowed))
    }
}

/// The path's segments, percent-decoded; empty segments (`//`, a trailing `/`) are skipped.
fn segments(path: &str) -> Result<Vec<Cow<'_, str>>, HttpError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| HttpError::invalid("path", format!("{s:?} is not UTF-8 once decoded")))
        })
        .collect()
}

fn no_query(req: &ApiRequest) -> Result<(), HttpError> {
    match form_urlencoded::parse(req.query.as_deref().unwrap_or("").as_bytes()).next() {
        Some((name, _)) => Err(HttpError::invalid(
            name.into_owned(),
            "unknown query parameter (this route takes none)",
        )),
        None => Ok(()),
    }
}

fn parse_address(text: &str) -> Result<IpAddr, HttpError> {
    text.parse()
        .map_err(|_| HttpError::invalid("address", format!("{text:?} is not an IP address")))
}

/// Parses a JSON body into `T`, naming the field at fault.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(HttpError::invalid(
                "body",
                "expected a JSON object, got an empty body",
            ))
        }
        // serde would also take a struct as an array of its fields: refuse that form.
        Some(b'{') => {}
        Some(_) => return Err(HttpError::invalid("body", "expected a JSON object")),
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return HttpError::invalid("body", format!("malformed JSON: {inner}"));
        }
        let path = e.path().to_string();
        let field = if path == "." {
            // serde reports a missing field at its parent: take the name from the message.
            missing_field(&inner.to_string()).unwrap_or_else(|| "body".to_owned())
        } else {
            path
        };
        HttpError::invalid(field, inner.to_string())
    })?;
    de.end()
        .map_err(|e| HttpError::invalid("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A JSON array body of `T`s (`PUT /v1/endpoints/{name}/rules`), naming the field at fault
/// as `{list}[2].action`, as the validation of the changed configuration does.
fn decode_list<T: DeserializeOwned>(list: &str, body: &[u8]) -> Result<Vec<T>, HttpError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {}
        _ => return Err(HttpError::invalid("body", "expected a JSON array")),
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return HttpError::invalid("body", format!("malformed JSON: {inner}"));
        }
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." => list.to_owned(),
            p => format!("{list}{p}"),
        };
        HttpError::invalid(field, inner.to_string())
    })?;
    de.end()
        .map_err(|e| HttpError::invalid("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The body of a `PUT` (the whole value, in the file's shape) or a `PATCH` (a JSON object of
/// the fields to set; at least one).
fn change_body<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<Change<T>, HttpError> {
    if method == "PUT" {
        return Ok(Change::Replace(decode_body(body)?));
    }
    let fields: serde_json::Map<String, serde_json::Value> = decode_body(body)?;
    if fields.is_empty() {
        return Err(HttpError::invalid("body", "no setting to change"));
    }
    Ok(Change::Patch(fields))
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Parses the query of `GET /v1/flows`.
pub fn flow_query(query: &str) -> Result<FlowQuery, HttpError> {
    let mut q = FlowQuery::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(HttpError::invalid(
                name.into_owned(),
                "given more than once",
            ));
        }
        seen.push(name.clone().into_owned());
        if value.is_empty() {
            continue;
        }
        let field = name.as_ref();
        match field {
            "group" => q.group = Some(value.into_owned()),
            "cursor" => q.cursor = Some(value.into_owned()),
            "appliance" => q.appliance = Some(parse_ip(field, &value)?),
            "address" => q.address = Some(parse_ip(field, &value)?),
            "port" => {
                q.port = Some(value.parse().map_err(|_| {
                    HttpError::invalid(field, format!("{value:?} is not a port number (0..=65535)"))
                })?)
            }
            "limit" => {
                let limit: usize = value.parse().ok().filter(|n| (1..=MAX_FLOW_PAGE).contains(n)).ok_or_else(|| {
                    HttpError::invalid(
                        field,
                        format!("{value:?} is not a number in 1..={MAX_FLOW_PAGE}"),
                    )
                })?;
                q.limit = Some(limit);
            }
            _ => {
                return Err(HttpError::invalid(
                    field,
                    "unknown query parameter; expected group, appliance, address, port, cursor or limit",
                ))
            }
        }
    }
    Ok(q)
}

fn parse_ip(field: &str, value: &str) -> Result<IpAddr, HttpError> {
    value
        .parse()
        .map_err(|_| HttpError::invalid(field, format!("{value:?} is not an IP address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decode_body_names_fields() {
        let e = decode_body::<TargetSpec>(br#"{"address":"10.0.0.1","wieght":3}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.detail.field.as_deref(), Some("wieght"), "{e:?}");
        assert!(e.detail.message.contains("unknown field `wieght`"), "{e:?}");

        let e = decode_body::<TargetSpec>(br#"{"address":"10.0.0.300"}"#).unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("address"), "{e:?}");

        let e = decode_body::<TargetSpec>(br#"{"weight":3}"#).unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("address"), "{e:?}");
        assert!(e.detail.message.contains("missing field"), "{e:?}");

        let e = decode_body::<WeightChange>(br#"{"weight":70000}"#).unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("weight"), "{e:?}");

        let e = decode_body::<TargetSpec>(br#"{"address":"#).unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("body"), "{e:?}");
        assert!(e.detail.message.starts_with("malformed JSON"), "{e:?}");

        let e = decode_body::<WeightChange>(br#"{"weight":1} x"#).unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("body"), "{e:?}");

        let e = decode_body::<WeightChange>(b"  ").unwrap_err();
        assert_eq!(e.detail.field.as_deref(), Some("body"), "{e:?}");

        let ok: TargetSpec = decode_body(br#"{"address":"fd00::7","weight":5}"#).unwrap();
        assert_eq!(ok.address, "fd00::7".parse::<IpAddr>().unwrap());
        assert_eq!(ok.weight, Some(5));
    }

    #[test]
    fn test_flow_query() {
        let q = flow_query("appliance=10.0.2.11&port=443&limit=5&group=fw&cursor=abc&address=")
            .unwrap();
        assert_eq!(
            q,
            FlowQuery {
                group: Some("fw".into()),
                appliance: Some("10.0.2.11".parse().unwrap()),
                address: None,
                port: Some(443),
                cursor: Some("abc".into()),
                limit: Some(5),
            }
        );
        let field = |s: &str| flow_query(s).unwrap_err().detail.field.unwrap();
        assert_eq!(field("port=70000"), "port");
        assert_eq!(field("limit=0"), "limit");
        assert_eq!(field("limit=10001"), "limit");
        assert_eq!(field("appliance=nope"), "appliance");
        assert_eq!(field("colour=red"), "colour");
        assert_eq!(field("port=1&port=2"), "port");
        assert_eq!(
            flow_query("address=fd00%3A%3A1").unwrap().address,
            Some("fd00::1".parse().unwrap())
        );
    }

    #[test]
    fn test_segments_decode() {
        let s = segments("/v1/target-groups/fw%20a/targets/fd00::1/").unwrap();
        assert_eq!(s, ["v1", "target-groups", "fw a", "targets", "fd00::1"]);
        assert_eq!(
            segments("/v1/%ff").unwrap_err().detail.field.as_deref(),
            Some("path")
        );
    }
}
