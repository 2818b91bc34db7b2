//! The event stream (Server-Sent Events on a collection): live changes, resumable by cursor.

use std::collections::VecDeque;

use bytes::BytesMut;
use serde::Deserialize;

use crate::paths::relative;
use crate::{Error, ErrorKind};

/// The longest line the reader buffers (a server sending more without a newline is refused).
const MAX_LINE: usize = 1 << 20;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The stream is live from this point of the change log.
    Ready {
        /// The cursor to resume after this event.
        cursor: Option<String>,
    },
    /// A resource was created or changed (or moved here).
    Change {
        /// The cursor to resume after this event.
        cursor: Option<String>,
        /// Its path below the client's base collection.
        path: String,
        /// Its repl-uid.
        rid: Option<String>,
        /// Its resourcetag.
        tag: Option<String>,
        /// Whether it is a collection.
        is_collection: bool,
    },
    /// A resource was deleted (or moved away).
    Delete {
        /// The cursor to resume after this event.
        cursor: Option<String>,
        /// Its last path.
        path: String,
        /// Its repl-uid.
        rid: Option<String>,
    },
    /// The cursor cannot be resumed (forged, foreign, too old, from a restored store's future):
    /// sync again with a manifest, then open a new stream. The stream ends after it.
    Reset,
}

#[derive(Deserialize)]
struct Data {
    href: Option<String>,
    #[serde(rename = "repl-uid")]
    rid: Option<String>,
    resourcetag: Option<String>,
    #[serde(default)]
    collection: bool,
}

/// A live event stream; [`EventStream::next`] waits for the next event.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    base_path: String,
    buf: BytesMut,
    ready: VecDeque<Event>,
    // The event being assembled.
    id: Option<String>,
    kind: String,
    data: String,
    ended: bool,
}

impl EventStream {
    pub(crate) fn new(response: reqwest::Response, base_path: String) -> Self {
        Self {
            response,
            base_path,
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            id: None,
            kind: String::new(),
            data: String::new(),
            ended: false,
        }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            if self.ended {
                return Ok(None);
            }
            match self.response.chunk().await.map_err(Error::transport)? {
                Some(chunk) => {
                    self.buf.extend_from_slice(&chunk);
                    self.lines()?;
                }
                None => self.ended = true,
            }
        }
    }

    fn lines(&mut self) -> Result<(), Error> {
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line = self.buf.split_to(nl + 1);
            let text = std::str::from_utf8(&line)
                .map_err(|_| Error::protocol("event stream: not UTF-8"))?
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            self.line(&text)?;
        }
        if self.buf.len() > MAX_LINE {
            return Err(Error::protocol("event stream: a line longer than 1 MiB"));
        }
        Ok(())
    }

    fn line(&mut self, line: &str) -> Result<(), Error> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return Ok(()); // heartbeat / comment
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => value.clone_into(&mut self.kind),
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                if self.data.len() > MAX_LINE {
                    return Err(Error::protocol("event stream: an event larger than 1 MiB"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<(), Error> {
        let kind = std::mem::take(&mut self.kind);
        let data = std::mem::take(&mut self.data);
        let cursor = self.id.clone();
        let path_of = |d: &Data| -> Result<String, Error> {
            let href = d.href.as_deref().unwrap_or_default();
            relative(href, &self.base_path)?
                .ok_or_else(|| Error::protocol(format!("event for {href}, outside the stream")))
        };
        let parse = |data: &str| {
            serde_json::from_str::<Data>(data)
                .map_err(|e| Error::new(ErrorKind::Protocol, format!("event data: {e}")))
        };
        let event = match kind.as_str() {
            "ready" => Event::Ready { cursor },
            "reset" => {
                self.ended = true;
                Event::Reset
            }
            "change" => {
                let d = parse(&data)?;
                Event::Change {
                    cursor,
                    path: path_of(&d)?,
                    rid: d.rid,
                    tag: d.resourcetag,
                    is_collection: d.collection,
                }
            }
            "delete" => {
                let d = parse(&data)?;
                Event::Delete {
                    cursor,
                    path: path_of(&d)?,
                    rid: d.rid,
                }
            }
            // Unknown event types (or none) are skipped, as the SSE model says.
            _ => return Ok(()),
        };
        self.ready.push_back(event);
        Ok(())
    }
}
