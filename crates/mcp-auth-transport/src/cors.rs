//! CORS preflights for tool parameters sent as headers.
//!
//! A tool's parameters annotated `x-mcp-header` travel as `Mcp-Param-{Name}`
//! headers too (SEP-2243), with names the server's tools choose, so no fixed
//! list of allowed request headers can hold them. [`ParamHeadersLayer`], in
//! front of tower-http's CORS layer, adds the `Mcp-Param-*` names a
//! preflight asks for to its `Access-Control-Allow-Headers` when the CORS
//! layer let the origin in; every other header still has to be in the
//! configured list (`HTTP_CORS_HEADERS`).
//!
//! A page calling a tool whose `region` parameter is annotated
//! `"x-mcp-header": "Region"`:
//!
//! ```text
//! OPTIONS /mcp
//! Origin: https://app.example
//! Access-Control-Request-Method: POST
//! Access-Control-Request-Headers: content-type, mcp-param-region
//!
//! 200 OK
//! Access-Control-Allow-Origin: https://app.example
//! Access-Control-Allow-Headers: content-type,authorization,...,mcp-param-region
//! ```

use std::task::{Context, Poll};

use futures::future::{BoxFuture, Either};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use tower::{Layer, Service};

/// The prefix of tool parameter headers (lowercase, as header names are
/// compared).
const PARAM_PREFIX: &str = "mcp-param-";

/// Most `Mcp-Param-*` names added to one answer; a preflight asking for more
/// gets the first ones (and the browser refuses the request).
const MAX_PARAM_HEADERS: usize = 32;

/// Longest `Mcp-Param-*` name added, in bytes.
const MAX_PARAM_NAME: usize = 128;

/// Adds the `Mcp-Param-*` headers a CORS preflight asks for to the
/// answer's `Access-Control-Allow-Headers` (see the module docs). Put it
/// in front of (outside) the CORS layer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ParamHeadersLayer;

impl<S> Layer<S> for ParamHeadersLayer {
    type Service = ParamHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ParamHeaders(inner)
    }
}

/// The service of [`ParamHeadersLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ParamHeaders<S>(S);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ParamHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let names = requested_param_headers(req.method(), req.headers());
        let answer = self.0.call(req);
        if names.is_empty() {
            return Either::Left(answer);
        }
        Either::Right(Box::pin(async move {
            let mut resp = answer.await?;
            allow(resp.headers_mut(), &names);
            Ok(resp)
        }))
    }
}

/// The `Mcp-Param-*` names a preflight (`OPTIONS` with
/// `Access-Control-Request-Method`) asks for, lowercase, at most
/// [`MAX_PARAM_HEADERS`]; empty for any other request.
fn requested_param_headers(method: &Method, headers: &HeaderMap) -> Vec<HeaderName> {
    if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Vec::new();
    }
    let mut names: Vec<HeaderName> = Vec::new();
    let asked = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for name in asked {
        if names.len() == MAX_PARAM_HEADERS {
            break;
        }
        let is_param = name.len() > PARAM_PREFIX.len()
            && name.len() <= MAX_PARAM_NAME
            && name
                .get(..PARAM_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PARAM_PREFIX));
        if !is_param {
            continue;
        }
        // Parsing lowercases, and refuses anything but a header token.
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// Adds `names` to the answer's `Access-Control-Allow-Headers`, only when
/// the CORS layer allowed the origin (the answer names it); names already
/// there are not repeated.
fn allow(headers: &mut HeaderMap, names: &[HeaderName]) {
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    let mut list = headers
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let before = list.len();
    for name in names {
        let known = list
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()));
        if !known {
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(name.as_str());
        }
    }
    if list.len() != before
        && let Ok(value) = HeaderValue::from_str(&list)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(asked: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        for a in asked {
            h.append(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(a).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_param_headers_of_preflights_are_picked() {
        let h = preflight(&[
            "content-type, Mcp-Param-Region,mcp-param-region",
            "x-other, mcp-param-, mcp-param-a b, MCP-PARAM-Size",
        ]);
        let names = requested_param_headers(&Method::OPTIONS, &h);
        assert_eq!(names, ["mcp-param-region", "mcp-param-size"]);
        // Not a preflight: nothing.
        assert!(requested_param_headers(&Method::POST, &h).is_empty());
        let mut no_method = h.clone();
        no_method.remove(header::ACCESS_CONTROL_REQUEST_METHOD);
        assert!(requested_param_headers(&Method::OPTIONS, &no_method).is_empty());
        // Bounded in number and length.
        let many: Vec<String> = (0..100).map(|i| format!("mcp-param-p{i}")).collect();
        let names = requested_param_headers(&Method::OPTIONS, &preflight(&[&many.join(",")]));
        assert_eq!(names.len(), MAX_PARAM_HEADERS);
        let long = format!("mcp-param-{}", "x".repeat(MAX_PARAM_NAME));
        assert!(requested_param_headers(&Method::OPTIONS, &preflight(&[&long])).is_empty());
    }

    #[test]
    fn names_are_added_only_to_answers_that_let_the_origin_in() {
        let names = [
            HeaderName::from_static("mcp-param-region"),
            HeaderName::from_static("content-type"),
        ];
        let mut refused = HeaderMap::new();
        refused.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        allow(&mut refused, &names);
        assert_eq!(
            refused[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type"
        );
        let mut allowed = refused.clone();
        allowed.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        allow(&mut allowed, &names);
        assert_eq!(
            allowed[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type,mcp-param-region"
        );
    }
}
