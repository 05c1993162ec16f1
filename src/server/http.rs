//! The minimal HTTP/1.0-1.1 server side of `metrics-address`: a pure parser of the
//! request head (request line and header lines) and the one-shot response writer.
//!
//! Invariants: [`parse_request`] is a pure function over the bytes received so far;
//! it never panics, never allocates more than the input it is given, and decides a
//! request is bad as soon as its first line is complete and malformed (a garbage
//! sender gets its 400 at once, without waiting for the head to end). A head longer
//! than [`MAX_REQUEST`] is bad. The body of a request is never read: the server
//! answers once and closes (`Connection: close`), so keep-alive and pipelining do
//! not exist here.

/// Largest request head accepted (request line plus headers), in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The Content-Type of the Prometheus text exposition format 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and optional query).
    pub target: String,
    /// Minor version of HTTP/1.x (0 or 1).
    pub minor: u8,
}

impl Request {
    /// The path part of the target (without `?query`).
    pub fn path(&self) -> &str {
        match self.target.split_once('?') {
            Some((p, _)) => p,
            None => &self.target,
        }
    }
}

/// What the bytes received so far amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head has not ended yet; read more.
    Incomplete,
    /// A complete, well-formed head.
    Complete(Request),
    /// Not an HTTP/1.x request head (the reason is for the log and the 400 body).
    Bad(String),
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Strip one trailing `\r` (lines may end in CRLF or, leniently, LF).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_request_line(line: &[u8]) -> Result<Request, String> {
    let line = strip_cr(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the request line is not METHOD TARGET VERSION".into());
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err("invalid method in the request line".into());
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err("invalid request target".into());
    }
    let minor = match version {
        b"HTTP/1.0" => 0,
        b"HTTP/1.1" => 1,
        _ => return Err("unsupported HTTP version (want HTTP/1.0 or HTTP/1.1)".into()),
    };
    Ok(Request {
        // Both are ASCII (checked above), so the conversion is lossless.
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        minor,
    })
}

fn check_header_line(line: &[u8]) -> Result<(), String> {
    let line = strip_cr(line);
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err("obsolete header line folding".into());
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err("a header line has no ':'".into());
    };
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err("invalid header name".into());
    }
    if line[colon + 1..]
        .iter()
        .any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
    {
        return Err("control character in a header value".into());
    }
    Ok(())
}

/// Parse the request head in `buf` (everything received so far).
pub fn parse_request(buf: &[u8]) -> Parsed {
    // The request line, as soon as it is complete.
    let Some(first_end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_REQUEST {
            Parsed::Bad("request line too long".into())
        } else {
            Parsed::Incomplete
        };
    };
    if first_end >= MAX_REQUEST {
        return Parsed::Bad("request line too long".into());
    }
    let request = match parse_request_line(&buf[..first_end]) {
        Ok(r) => r,
        Err(e) => return Parsed::Bad(e),
    };
    // Header lines up to the empty line; each one is checked once complete.
    let mut pos = first_end + 1;
    loop {
        let rest = &buf[pos.min(buf.len())..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return if buf.len() >= MAX_REQUEST {
                Parsed::Bad("request head too large".into())
            } else {
                Parsed::Incomplete
            };
        };
        if pos + len >= MAX_REQUEST {
            return Parsed::Bad("request head too large".into());
        }
        let line = &rest[..len];
        if strip_cr(line).is_empty() {
            return Parsed::Complete(request);
        }
        if let Err(e) = check_header_line(line) {
            return Parsed::Bad(e);
        }
        pos += len + 1;
    }
}

/// A response to send before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: send the headers (with the body's length) but not the body.
    pub head_only: bool,
}

impl Response {
    fn plain(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            head_only: false,
        }
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self, minor: u8) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.{minor} {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Decide the answer to the bytes received so far: `None` while the head is
/// incomplete; otherwise the full response bytes. `metrics` renders the exposition
/// and is called only for `GET`/`HEAD /metrics`.
pub fn respond(buf: &[u8], metrics: &mut dyn FnMut() -> String) -> Option<Vec<u8>> {
    match parse_request(buf) {
        Parsed::Incomplete => None,
        Parsed::Bad(why) => {
            let status = if why.contains("too l") { 431 } else { 400 };
            Some(Response::plain(status, format!("bad request: {why}\n")).to_bytes(1))
        }
        Parsed::Complete(req) => {
            let head_only = req.method == "HEAD";
            let mut resp = if req.method != "GET" && !head_only {
                Response::plain(405, "only GET and HEAD are supported\n")
            } else if req.path() == "/metrics" {
                Response {
                    status: 200,
                    content_type: PROMETHEUS_CONTENT_TYPE,
                    body: metrics(),
                    head_only: false,
                }
            } else {
                Response::plain(404, "not found; metrics are at /metrics\n")
            };
            resp.head_only = head_only;
            Some(resp.to_bytes(req.minor))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &[u8]) -> Option<String> {
        respond(req, &mut || "zeo_up 1\n".to_string())
            .map(|b| String::from_utf8(b).expect("responses are UTF-8"))
    }

    #[test]
    fn get_metrics_is_answered_with_the_exposition() {
        let r = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
             Content-Length: 9\r\nConnection: close\r\n\r\nzeo_up 1\n"
        );
        // HTTP/1.0, bare LF line ends and a query string are accepted.
        let r = answer(b"GET /metrics?x=1 HTTP/1.0\n\n").unwrap();
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
    }

    #[test]
    fn head_sends_no_body() {
        let r = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.contains("Content-Length: 9\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "{r}");
    }

    #[test]
    fn other_paths_methods_and_garbage() {
        assert!(answer(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap()
            .starts_with("HTTP/1.1 404 Not Found\r\n"));
        let r = answer(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
        for bad in [
            &b"hello\r\n"[..],
            b"GET /metrics\r\n",
            b"GET /metrics HTTP/2.0\r\n",
            b"GET  /metrics HTTP/1.1\r\n",
            b"G\x01T /metrics HTTP/1.1\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n",
            b"GET /metrics HTTP/1.1\r\n folded\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n",
            b"GET /metrics HTTP/1.1\r\nX: a\x01b\r\n",
        ] {
            let r = answer(bad).unwrap_or_else(|| panic!("{bad:?} incomplete"));
            assert!(
                r.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{bad:?}: {r}"
            );
        }
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_ones_are_refused() {
        assert_eq!(answer(b""), None);
        assert_eq!(answer(b"GET /metr"), None);
        assert_eq!(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r"), None);
        let long = vec![b'a'; MAX_REQUEST];
        assert!(answer(&long).unwrap().starts_with("HTTP/1.1 431 "));
        let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while head.len() < MAX_REQUEST {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        assert!(answer(&head).unwrap().starts_with("HTTP/1.1 431 "));
    }

    /// Thousands of mutated, truncated and random heads: the parser never panics, a
    /// head of MAX_REQUEST bytes or more is always decided, and a verdict reached on
    /// a prefix holds for the whole input (a bad start stays bad, a complete head
    /// stays the same request whatever follows it).
    #[test]
    fn parser_survives_mutations_and_decides_consistently() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 4] = [
            b"GET /metrics HTTP/1.1\r\nHost: localhost:9100\r\nUser-Agent: curl/8\r\n\r\n",
            b"HEAD /metrics?a=b HTTP/1.0\n\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
        ];
        for round in 0..20_000 {
            let mut b = seeds[(rnd() % 4) as usize].to_vec();
            match round % 4 {
                0 => {
                    for _ in 0..1 + rnd() % 4 {
                        let i = (rnd() % b.len() as u64) as usize;
                        b[i] = rnd() as u8;
                    }
                }
                1 => b.truncate((rnd() % (b.len() as u64 + 1)) as usize),
                2 => {
                    let n = (rnd() % 64) as usize;
                    b = (0..n)
                        .map(|_| b" \r\n:GET/HTTP1.a\x00\xff"[(rnd() % 16) as usize])
                        .collect();
                }
                _ => {
                    let i = (rnd() % b.len() as u64) as usize;
                    let extra = (rnd() % (2 * MAX_REQUEST as u64)) as usize;
                    let fill = if rnd() % 2 == 0 { b'a' } else { b'\n' };
                    b.splice(i..i, std::iter::repeat_n(fill, extra));
                }
            }
            let whole = parse_request(&b);
            if b.len() >= MAX_REQUEST {
                assert_ne!(whole, Parsed::Incomplete, "undecided at {} bytes", b.len());
            }
            let cut = (rnd() % (b.len() as u64 + 1)) as usize;
            match parse_request(&b[..cut]) {
                Parsed::Bad(_) => assert!(matches!(whole, Parsed::Bad(_)), "{b:?}"),
                Parsed::Complete(r) => assert_eq!(whole, Parsed::Complete(r)),
                Parsed::Incomplete => {}
            }
            let mut render = || String::from("x");
            let _ = respond(&b, &mut render);
        }
    }

    #[test]
    fn the_metrics_renderer_runs_only_for_metrics() {
        let mut calls = 0;
        let mut render = || {
            calls += 1;
            String::new()
        };
        respond(b"GET /other HTTP/1.1\r\n\r\n", &mut render);
        respond(b"garbage\r\n", &mut render);
        respond(b"GET /metrics HTTP/1.1\r\n\r\n", &mut render);
        assert_eq!(calls, 1);
    }
}
