//! One request on its way through the proxy: the client's bytes, the node holding it,
//! and where its answer goes.
//!
//! A job is answered exactly once: with the node's response (the client's id put
//! back), or with an error. Dropping an unanswered job answers `internal`, so a
//! client connection never waits forever for an answer that was lost on the way.

use crate::balancer::error::BalancerError;
use crate::balancer::snapshot::Member;
use crate::protocol::scan::{self, RequestHead};
use crate::protocol::{ApiError, Response};
use crate::runtime::{mailbox::Mailbox, Outbound};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// Where a job's answer frame goes.
pub enum Reply {
    /// The client connection's mailbox: requests taken as bytes.
    Mailbox(Arc<Mailbox>),
    /// A waiting future: requests the server decoded first (unusual shapes).
    Channel(async_channel::Sender<Vec<u8>>),
}

/// A request being forwarded.
pub struct Job {
    /// The client's payload as received; kept whole so a retry can send it again.
    payload: Vec<u8>,
    /// Where the client's id sits in `payload`; each node connection puts its own
    /// wire id there.
    id_span: Range<usize>,
    /// The client's id, put back into the response.
    pub client_id: u64,
    /// The client connection (keyless stickiness, pool slot affinity).
    pub conn: u64,
    /// The request's deadline, retries included.
    pub deadline: Instant,
    /// Whether this is already the second try.
    pub retried: bool,
    /// When the node holding it should have answered (outlier ejection); `None` when
    /// ejection is off for its service.
    pub answer_by: Option<Instant>,
    /// Its lateness was already dealt with (counted, moved on).
    pub overdue: bool,
    /// Responses its connection had received when it was sent there (wrapping; 32
    /// bits keep the job, which is moved at every hand-off, small).
    pub answers_mark: u32,
    /// The node holding the request, counted in its in-flight load meanwhile.
    at: Option<Arc<Member>>,
    /// Taken when the job is answered.
    reply: Option<Reply>,
}

impl Job {
    /// A job for `payload`, whose head was read as `head`.
    pub fn new(
        payload: Vec<u8>,
        head: &RequestHead<'_>,
        conn: u64,
        deadline: Instant,
        reply: Reply,
    ) -> Job {
        Job {
            id_span: head.id_span.clone(),
            client_id: head.id,
            conn,
            deadline,
            retried: false,
            answer_by: None,
            overdue: false,
            answers_mark: 0,
            at: None,
            reply: Some(reply),
            payload,
        }
    }

    /// The request's head, read again from its bytes (retries only).
    pub fn head(&self) -> Option<RequestHead<'_>> {
        scan::request_head(&self.payload)
    }

    /// Appends the request as one frame carrying `wire_id` instead of the client's id.
    pub fn encode(&self, out: &mut Vec<u8>, wire_id: u64) {
        scan::encode_with_id(out, &self.payload, &self.id_span, wire_id);
    }

    /// Records that `member` holds the request from `now`, counting it in the node's
    /// in-flight load.
    pub fn place(&mut self, member: Arc<Member>, now: Instant) {
        member.load.inflight.add();
        self.answer_by = member.response_timeout.map(|t| now + t);
        self.overdue = false;
        if let Some(old) = self.at.replace(member) {
            old.load.inflight.sub();
        }
    }

    /// The node that held the request, which no longer counts it.
    pub fn unplace(&mut self) -> Option<Arc<Member>> {
        let m = self.at.take()?;
        m.load.inflight.sub();
        Some(m)
    }

    /// The node holding the request.
    pub fn member(&self) -> Option<&Arc<Member>> {
        self.at.as_ref()
    }

    /// The id of the node holding the request, for errors and logs.
    pub fn node_id(&self) -> String {
        self.at
            .as_ref()
            .map(|m| m.id.to_string())
            .unwrap_or_default()
    }

    /// Answers with a node's response `payload`, whose id at `span` becomes the
    /// client's.
    pub fn respond(mut self, payload: &[u8], span: &Range<usize>) {
        if let Some(m) = self.unplace() {
            m.load.answered();
        }
        // The request's bytes are not needed any more: their buffer carries the answer.
        let mut frame = std::mem::take(&mut self.payload);
        frame.clear();
        scan::encode_with_id(&mut frame, payload, span, self.client_id);
        self.deliver(frame);
    }

    /// Answers with `error`.
    pub fn fail(mut self, error: &BalancerError) {
        self.unplace();
        let id = self.client_id;
        self.answer_error(Response::err(Some(id), error.to_api()));
    }

    fn answer_error(&mut self, resp: Response) {
        let mut frame = Vec::new();
        resp.encode(&mut frame);
        self.deliver(frame);
    }

    fn deliver(&mut self, frame: Vec<u8>) {
        match self.reply.take() {
            // Refused when the client has left: the answer has nowhere to go.
            Some(Reply::Mailbox(m)) => {
                m.push(Outbound::Response(frame));
            }
            Some(Reply::Channel(tx)) => {
                let _ = tx.try_send(frame);
            }
            None => {}
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.unplace();
        if self.reply.is_some() {
            let id = self.client_id;
            self.answer_error(Response::err(Some(id), ApiError::internal()));
        }
    }
}
