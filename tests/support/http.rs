//! A small HTTP/1.1 server on 127.0.0.1 whose every response is chosen by the test, including
//! faults a real network produces: resets, stalls, truncation, overlong bodies, wrong ranges.
//! One request per connection (`Connection: close`), one thread per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Index among all requests this server received (0-based).
    pub n: usize,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The start of a `Range: bytes=N-` or `bytes=N-M` header.
    pub fn range_start(&self) -> Option<u64> {
        self.range().map(|(start, _)| start)
    }

    /// `Range: bytes=N-` as `(N, None)`, `bytes=N-M` as `(N, Some(M))` (M inclusive).
    pub fn range(&self) -> Option<(u64, Option<u64>)> {
        let (start, end) = self
            .header("range")?
            .strip_prefix("bytes=")?
            .split_once('-')?;
        let end = match end {
            "" => None,
            e => Some(e.parse().ok()?),
        };
        Some((start.parse().ok()?, end))
    }
}

/// How the body goes wrong.
#[derive(Debug, Clone)]
pub enum Fault {
    None,
    /// Send this many body bytes, then reset the connection (RST).
    ResetAfter(usize),
    /// Send this many body bytes, then go silent for the duration, then close.
    StallAfter(usize, Duration),
    /// Send this many body bytes, then close cleanly (FIN) although more were announced.
    CloseAfter(usize),
    /// Send the body in pieces with a pause between them (slow but moving).
    Trickle {
        piece: usize,
        pause: Duration,
    },
    /// Read the request, then send nothing at all (no status line) for the duration, then
    /// close: a server that accepts and never answers.
    Silent(Duration),
    /// Send these bytes instead of the reply (garbage, absurd headers, a non-HTTP service),
    /// then linger for the duration before closing.
    Raw(Vec<u8>, Duration),
    /// Send the status line and headers one byte every `pause` (slowloris in reverse).
    HeadTrickle(Duration),
    /// After the headers (use with `chunked()`), an endless chunked body of zeros, as fast as
    /// the client takes it, for at most the duration.
    Endless(Duration),
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Announce `Content-Length: body.len()` (else `Transfer-Encoding: chunked`).
    pub content_length: bool,
    /// Extra bytes written after the body, beyond what was announced.
    pub trailing: Vec<u8>,
    pub fault: Fault,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            content_length: true,
            trailing: Vec::new(),
            fault: Fault::None,
        }
    }

    pub fn ok(body: &[u8]) -> Reply {
        Reply {
            body: body.to_vec(),
            ..Reply::status(200)
        }
    }

    /// What a correct server answers for `content` with this ETag: 200, or 206 when the
    /// request has `Range: bytes=N-` and `If-Range` (if any) matches.
    pub fn file(req: &Request, content: &[u8], etag: &str) -> Reply {
        let if_range_ok = req.header("if-range").is_none_or(|v| v == etag);
        match req.range() {
            Some((start, end)) if if_range_ok && (start as usize) < content.len() => {
                let stop = end.map_or(content.len(), |e| (e as usize + 1).min(content.len()));
                Reply::partial(&content[..stop], start as usize, content.len(), etag)
            }
            _ => Reply::ok(content).header("ETag", etag),
        }
    }

    /// A 206 carrying `content[start..]` but claiming `Content-Range: bytes start-(len-1)/total`
    /// (so tests can lie about either).
    pub fn partial(content: &[u8], start: usize, total: usize, etag: &str) -> Reply {
        Reply {
            body: content[start..].to_vec(),
            ..Reply::status(206)
        }
        .header("ETag", etag)
        .header(
            "Content-Range",
            &format!("bytes {start}-{}/{total}", content.len() - 1),
        )
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn fault(mut self, f: Fault) -> Reply {
        self.fault = f;
        self
    }

    pub fn chunked(mut self) -> Reply {
        self.content_length = false;
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    /// Connections accepted and not yet finished (the reply written or the write failed).
    open: Arc<AtomicUsize>,
}

impl Server {
    /// Starts serving plain HTTP on a random 127.0.0.1 port.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_with(handler, |s| Box::new(s) as Box<dyn Conn>)
    }

    /// Starts a server whose connections are wrapped (TLS) by `wrap`; `wrap` may return
    /// `None` to drop a connection (failed handshake).
    pub fn start_with<W>(
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
        wrap: W,
    ) -> Server
    where
        W: Fn(TcpStream) -> Box<dyn Conn> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let wrap = Arc::new(wrap);
        let counter = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        {
            let (requests, stop, open) = (requests.clone(), stop.clone(), open.clone());
            std::thread::spawn(move || {
                // Polling accept so the thread ends with the test (no leaked listener).
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            let (h, r, w, c) = (
                                handler.clone(),
                                requests.clone(),
                                wrap.clone(),
                                counter.clone(),
                            );
                            open.fetch_add(1, Ordering::SeqCst);
                            let open = open.clone();
                            std::thread::spawn(move || {
                                serve(s, &*h, &r, &*w, &c);
                                open.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Server {
            addr,
            requests,
            stop,
            open,
        }
    }

    /// Connections still being served: a client that abandoned one must have closed it, which
    /// a trickling reply notices at its next write.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A connection: plain TCP or TLS over it.
pub trait Conn: Read + Write + Send {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

fn serve(
    s: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Request>>,
    wrap: &(dyn Fn(TcpStream) -> Box<dyn Conn> + Send + Sync),
    counter: &AtomicUsize,
) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = wrap(s);
    let Some(req) = read_request(&mut conn, counter) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let _ = write_reply(&mut conn, &reply);
}

fn read_request(conn: &mut Box<dyn Conn>, counter: &AtomicUsize) -> Option<Request> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 {
            return None;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some(Request {
        n: counter.fetch_add(1, Ordering::SeqCst),
        path,
        headers,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn write_reply(conn: &mut Box<dyn Conn>, r: &Reply) -> std::io::Result<()> {
    match &r.fault {
        Fault::Silent(d) => {
            std::thread::sleep(*d);
            return Ok(());
        }
        Fault::Raw(bytes, d) => {
            conn.write_all(bytes)?;
            conn.flush()?;
            std::thread::sleep(*d);
            return Ok(());
        }
        _ => {}
    }
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status)
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if r.content_length {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    } else {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    if let Fault::HeadTrickle(pause) = r.fault {
        for b in head.as_bytes() {
            conn.write_all(std::slice::from_ref(b))?;
            conn.flush()?;
            std::thread::sleep(pause);
        }
    } else {
        conn.write_all(head.as_bytes())?;
    }
    let limit = match r.fault {
        Fault::ResetAfter(n) | Fault::StallAfter(n, _) | Fault::CloseAfter(n) => {
            n.min(r.body.len())
        }
        _ => r.body.len(),
    };
    if let Fault::Endless(d) = r.fault {
        let chunk = vec![0u8; 64 << 10];
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            conn.write_all(&chunk)?;
            conn.write_all(b"\r\n")?;
        }
        return Ok(());
    }
    let mut body = r.body[..limit].to_vec();
    let complete = limit == r.body.len();
    if complete {
        body.extend_from_slice(&r.trailing);
    }
    let piece = match r.fault {
        Fault::Trickle { piece, .. } => piece,
        _ => 64 << 10,
    };
    for c in body.chunks(piece.max(1)) {
        if r.content_length {
            conn.write_all(c)?;
        } else {
            conn.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
            conn.write_all(c)?;
            conn.write_all(b"\r\n")?;
        }
        if let Fault::Trickle { pause, .. } = r.fault {
            conn.flush()?;
            std::thread::sleep(pause);
        }
    }
    conn.flush()?;
    match r.fault {
        Fault::ResetAfter(_) => {
            // Let the client drain what was sent: with SO_LINGER 0 unsent data is discarded.
            std::thread::sleep(Duration::from_millis(150));
            reset(conn.tcp())
        }
        Fault::StallAfter(_, d) => std::thread::sleep(d),
        Fault::CloseAfter(_) => {}
        _ => {
            if !r.content_length && complete {
                conn.write_all(b"0\r\n\r\n")?;
            }
        }
    }
    conn.flush()
}

/// Closes with RST instead of FIN (SO_LINGER 0): what a crashed server or a middlebox does.
pub fn reset(s: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO));
    let _ = s.shutdown(std::net::Shutdown::Read);
}
