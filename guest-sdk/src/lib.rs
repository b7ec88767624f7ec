//! Write Reprise workflows and activities in Rust.
//!
//! A workflow is deterministic code that reaches the world only through its
//! [`Context`]: every call is journaled by the host and replayed after a
//! crash, so the workflow resumes where it was. Plain `std::time::SystemTime`
//! and `rand` are journaled too (the host virtualizes WASI); files, sockets
//! and HTTP are denied — do I/O in activities.
//!
//! ```ignore
//! use reprise_sdk::{Context, Workflow, WorkflowError};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Deserialize)]
//! struct Order { id: String, cents: u64 }
//! #[derive(Serialize, Deserialize)]
//! struct Charge { charge_id: String }
//!
//! struct Checkout;
//! impl Workflow for Checkout {
//!     type Input = Order;
//!     type Output = Charge;
//!     fn run(ctx: &Context, order: Order) -> Result<Charge, WorkflowError> {
//!         let charge: Charge = ctx
//!             .activity("charge")
//!             .input(&serde_json::json!({ "order": order.id, "cents": order.cents }))
//!             .idempotency_key(format!("charge-{}", order.id))
//!             .call()?;
//!         ctx.sleep(Duration::from_secs(1))?;
//!         Ok(charge)
//!     }
//! }
//! reprise_sdk::export_workflow!(Checkout);
//! ```
//!
//! Activities are plain functions exported with [`export_activities!`].

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod bindings {
    pub mod workflow {
        wit_bindgen::generate!({
            world: "workflow",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "export_workflow_world",
            default_bindings_module: "reprise_sdk::bindings::workflow",
        });
    }
    pub mod activity {
        wit_bindgen::generate!({
            world: "activity",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "export_activity_world",
            default_bindings_module: "reprise_sdk::bindings::activity",
            with: {
                "reprise:workflow/types@0.1.0": crate::bindings::workflow::reprise::workflow::types,
            },
        });
    }
}

use bindings::workflow::reprise::workflow::types as wit;

pub use bindings::workflow::reprise::workflow::durable::WorkflowInfo;

/// The durable imports as the rest of the SDK calls them: each one first
/// gives a waiting query its answer (see [`queries`]), so no call site can
/// forget to.
mod durable {
    use super::bindings::workflow::reprise::workflow::durable as raw;
    use super::queries::answer_waiting_query;
    use super::wit;

    pub use raw::{UpdateRequest, info, log};

    macro_rules! answering_queries_first {
        ($(fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {$(
            pub fn $name($($arg: $ty),*) $(-> $ret)? {
                answer_waiting_query();
                raw::$name($($arg),*)
            }
        )*};
    }

    answering_queries_first! {
        fn now_ms() -> u64;
        fn random_bytes(len: u32) -> Vec<u8>;
        fn sleep_ms(duration_ms: u64) -> Result<(), wit::Cancelled>;
        fn await_signal(name: &str, timeout_ms: Option<u64>) -> Result<Option<String>, wit::Cancelled>;
        fn start_activity(name: &str, input: &str, options: &wit::ActivityOptions) -> u64;
        fn await_activity(handle: u64) -> Result<String, wit::ActivityFailure>;
        fn await_any(handles: &[u64]) -> (u64, Result<String, wit::ActivityFailure>);
        fn start_child(workflow_type: &str, input: &str, workflow_id: Option<&str>) -> u64;
        fn await_child(handle: u64) -> Result<String, wit::WorkflowError>;
        fn patched(change_id: &str) -> bool;
        fn deprecate_patch(change_id: &str);
        fn continue_as_new(input: &str);
        fn upsert_search_attributes(attributes: &str);
        fn await_update(names: &[String], timeout_ms: Option<u64>) -> Result<Option<UpdateRequest>, wit::Cancelled>;
        fn complete_update(update_id: &str, outcome: Result<&str, &wit::WorkflowError>);
    }
}

/// Query handlers and update validators: what the host's query replays
/// ask for (see `next-query` in the WIT). They live in the guest's memory
/// only; nothing about them is journaled.
mod queries {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use super::WorkflowError;
    use super::bindings::workflow::reprise::workflow::durable::{
        QueryKind, QueryRequest, answer_query, next_query,
    };
    use super::wit;

    /// A handler on raw JSON args, answering raw JSON.
    pub type Handler = Rc<dyn Fn(&str) -> Result<String, WorkflowError>>;

    #[derive(Default)]
    struct Handlers {
        queries: BTreeMap<String, Handler>,
        validators: BTreeMap<String, Handler>,
    }

    thread_local! {
        static HANDLERS: RefCell<Handlers> = RefCell::default();
    }

    pub fn add_query(name: &str, handler: Handler) {
        HANDLERS.with_borrow_mut(|handlers| handlers.queries.insert(name.to_string(), handler));
    }

    pub fn add_validator(name: &str, handler: Handler) {
        HANDLERS.with_borrow_mut(|handlers| handlers.validators.insert(name.to_string(), handler));
    }

    /// Asks the host once whether a query waits and answers it. Without
    /// handlers there is nothing to answer, so the host is not asked.
    pub fn answer_waiting_query() {
        let nothing_registered = HANDLERS
            .with_borrow(|handlers| handlers.queries.is_empty() && handlers.validators.is_empty());
        if nothing_registered {
            return;
        }
        if let Some(request) = next_query() {
            let answer = dispatch(&request).map_err(|error| wit::WorkflowError {
                error_type: error.error_type,
                message: error.message,
                details: error.details,
            });
            answer_query(answer.as_deref());
        }
    }

    fn dispatch(request: &QueryRequest) -> Result<String, WorkflowError> {
        // Cloned out of the registry, so a handler may register others.
        let (handler, known) = HANDLERS.with_borrow(|handlers| match request.kind {
            QueryKind::Query => (
                handlers.queries.get(&request.name).cloned(),
                handlers.queries.keys().cloned().collect::<Vec<_>>(),
            ),
            QueryKind::ValidateUpdate => {
                (handlers.validators.get(&request.name).cloned(), Vec::new())
            }
        });
        match (handler, request.kind) {
            (Some(handler), _) => handler(&request.args),
            // No validator: every update of that name is accepted.
            (None, QueryKind::ValidateUpdate) => Ok("null".to_string()),
            (None, QueryKind::Query) => Err(WorkflowError::new(
                "UnknownQuery",
                format!(
                    "this workflow has no handler for query `{}`; it answers: {}",
                    request.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )),
        }
    }
}
pub use wit::{ActivityError, ActivityFailure, Cancelled, FailureReason, LogLevel, RetryPolicy};

/// A workflow: implement it and export it with [`export_workflow!`].
pub trait Workflow {
    type Input: DeserializeOwned;
    type Output: Serialize;
    fn run(ctx: &Context, input: Self::Input) -> Result<Self::Output, WorkflowError>;
}

/// The error that fails a workflow execution.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowError {
    pub error_type: String,
    pub message: String,
    pub details: Option<String>,
}

impl WorkflowError {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> WorkflowError {
        WorkflowError {
            error_type: error_type.into(),
            message: message.into(),
            details: None,
        }
    }
}

impl std::fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

/// An activity that failed for good fails the workflow with its last error,
/// unless the workflow handles it.
impl From<ActivityFailure> for WorkflowError {
    fn from(failure: ActivityFailure) -> WorkflowError {
        if matches!(failure.reason, FailureReason::Cancelled) {
            // A cancellation is not the activity giving up: say what it is.
            return WorkflowError {
                error_type: failure.last_error.error_type,
                message: failure.last_error.message,
                details: failure.last_error.details,
            };
        }
        WorkflowError {
            error_type: failure.last_error.error_type,
            message: format!(
                "{} (activity gave up: {} after {} attempt(s))",
                failure.last_error.message,
                reason_text(failure.reason),
                failure.attempts
            ),
            details: failure.last_error.details,
        }
    }
}

/// The error type of a cancellation turned into a [`WorkflowError`].
const CANCELLED_ERROR_TYPE: &str = "Cancelled";

/// A cancelled workflow that lets the error through ends as cancelled
/// (after its saga compensates).
impl From<Cancelled> for WorkflowError {
    fn from(cancelled: Cancelled) -> WorkflowError {
        WorkflowError::new(CANCELLED_ERROR_TYPE, cancelled.message)
    }
}

fn reason_text(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::NonRetryable => "non-retryable error",
        FailureReason::AttemptsExhausted => "attempts exhausted",
        FailureReason::TimedOut => "timed out",
        FailureReason::UnknownActivity => "unknown activity",
        FailureReason::Cancelled => "cancelled",
    }
}

impl RetryPolicy {
    /// The runtime's defaults: 1 s initial interval, ×2 backoff, a cap of
    /// 100 × the initial interval, unlimited attempts.
    pub fn new() -> RetryPolicy {
        RetryPolicy {
            initial_interval_ms: 1_000,
            backoff_coefficient: 2.0,
            // 0: the host uses 100 × the initial interval.
            maximum_interval_ms: 0,
            maximum_attempts: 0,
            non_retryable_error_types: Vec::new(),
        }
    }

    pub fn initial_interval(mut self, interval: Duration) -> Self {
        self.initial_interval_ms = interval.as_millis() as u64;
        self
    }

    pub fn backoff_coefficient(mut self, coefficient: f64) -> Self {
        self.backoff_coefficient = coefficient;
        self
    }

    pub fn maximum_interval(mut self, interval: Duration) -> Self {
        self.maximum_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Attempts in all, the first included; 0 means unlimited.
    pub fn maximum_attempts(mut self, attempts: u32) -> Self {
        self.maximum_attempts = attempts;
        self
    }

    pub fn non_retryable(mut self, error_type: impl Into<String>) -> Self {
        self.non_retryable_error_types.push(error_type.into());
        self
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

impl ActivityError {
    /// A failure that is worth retrying (a timeout, a 503…).
    pub fn retryable(error_type: impl Into<String>, message: impl Into<String>) -> ActivityError {
        ActivityError {
            error_type: error_type.into(),
            message: message.into(),
            details: None,
            non_retryable: false,
        }
    }

    /// A business failure: the call fails at once, whatever the policy says.
    pub fn non_retryable(
        error_type: impl Into<String>,
        message: impl Into<String>,
    ) -> ActivityError {
        ActivityError {
            non_retryable: true,
            ..ActivityError::retryable(error_type, message)
        }
    }
}

/// The workflow's handle on the durable host. Every method is journaled.
pub struct Context {
    _private: (),
}

impl Context {
    #[doc(hidden)]
    pub fn new() -> Context {
        Context { _private: () }
    }

    /// Wall-clock time, recorded the first time and replayed after.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(durable::now_ms())
    }

    /// A random value, recorded the first time and replayed after.
    pub fn random<T: RandomValue>(&self) -> T {
        T::from_bytes(&durable::random_bytes(T::SIZE as u32))
    }

    /// `len` random bytes (at most 4096), recorded and replayed.
    pub fn random_bytes(&self, len: u32) -> Vec<u8> {
        durable::random_bytes(len)
    }

    /// A durable timer: survives crashes and restarts. Returns
    /// [`Cancelled`] if the workflow is cancelled meanwhile.
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        durable::sleep_ms(duration.as_millis() as u64)
    }

    /// Waits for the next signal `name` and decodes its JSON payload.
    /// Signals sent earlier are kept, each delivered once.
    pub fn signal<T: DeserializeOwned>(&self, name: &str) -> Result<T, WorkflowError> {
        match self.signal_within(name, None)? {
            Some(value) => Ok(value),
            None => Err(WorkflowError::new(
                "SignalMissing",
                format!("no signal `{name}`"),
            )),
        }
    }

    /// Like [`Context::signal`], giving up after `timeout` (a durable
    /// deadline): `Ok(None)` when it passes.
    pub fn signal_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<T>, WorkflowError> {
        self.signal_within(name, Some(timeout))
    }

    fn signal_within<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, WorkflowError> {
        let timeout_ms = timeout.map(|timeout| timeout.as_millis() as u64);
        match durable::await_signal(name, timeout_ms)? {
            None => Ok(None),
            Some(payload) => serde_json::from_str(&payload).map(Some).map_err(|error| {
                WorkflowError::new(
                    "SerializationError",
                    format!("could not decode signal `{name}` ({payload}): {error}"),
                )
            }),
        }
    }

    /// Versioning: whether this execution takes the code path added by
    /// change `change_id`. New executions (and old ones that reach this
    /// point only now) get `true`; an execution whose history was recorded
    /// by the code before the change replays with `false`. The first answer
    /// for a change id holds for the rest of the run.
    ///
    /// ```ignore
    /// if ctx.patched("send-receipt") {
    ///     ctx.activity("receipt").input(&order).call::<()>()?;
    /// }
    /// ```
    ///
    /// Once no execution that could take the old path is left, replace the
    /// call with [`Context::deprecate_patch`]; later, remove that too.
    pub fn patched(&self, change_id: &str) -> bool {
        durable::patched(change_id)
    }

    /// The step after [`Context::patched`] once every execution that could
    /// take the old path has finished: only the new path is left in the
    /// code, and executions started now still replay under code that asks
    /// `patched(change_id)`.
    pub fn deprecate_patch(&self, change_id: &str) {
        durable::deprecate_patch(change_id)
    }

    /// Ends this run and starts a fresh one of the same workflow id with
    /// `input` and an empty history: how a workflow that runs for months
    /// keeps its history small. Never returns. Signals not yet received
    /// move to the next run; activities and children still running are
    /// abandoned.
    pub fn continue_as_new<T: Serialize + ?Sized>(&self, input: &T) -> ! {
        let input = serde_json::to_string(input)
            .unwrap_or_else(|error| panic!("could not encode the continue-as-new input: {error}"));
        durable::continue_as_new(&input);
        unreachable!("the host stops the workflow at continue-as-new")
    }

    /// Sets search attributes of this run — names to strings, numbers or
    /// booleans, `null` to remove one — that lists filter on
    /// (`reprise list --search-attribute status=shipped`). Journaled.
    pub fn upsert_search_attributes<T: Serialize + ?Sized>(
        &self,
        attributes: &T,
    ) -> Result<(), WorkflowError> {
        let attributes = serde_json::to_string(attributes).map_err(|error| {
            WorkflowError::new(
                "SerializationError",
                format!("could not encode the search attributes: {error}"),
            )
        })?;
        durable::upsert_search_attributes(&attributes);
        Ok(())
    }

    /// Answers query `name` with `handler` from now on: a reader calls
    /// `POST /v1/executions/{id}/queries/{name}` (`reprise query`) and gets
    /// what it returns for the JSON args, computed from the state the
    /// durable history leads to. Nothing is journaled; the handler must
    /// not make durable calls (the query fails if it does). Registering a
    /// name again replaces its handler.
    ///
    /// ```ignore
    /// let count = Rc::new(Cell::new(0));
    /// let read = count.clone();
    /// ctx.on_query("count", move |(): ()| Ok(read.get()));
    /// ```
    pub fn on_query<A, R, F>(&self, name: &str, handler: F)
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> Result<R, WorkflowError> + 'static,
    {
        let query = name.to_string();
        queries::add_query(
            name,
            std::rc::Rc::new(move |args: &str| {
                let args = serde_json::from_str(args).map_err(|error| {
                    WorkflowError::new(
                        "InvalidQueryArgs",
                        format!("the args of query `{query}` ({args}) do not fit: {error}"),
                    )
                })?;
                encode_json(&handler(args)?, &format!("the answer to query `{query}`"))
            }),
        );
    }

    /// Checks updates named `name` before they are accepted: an error from
    /// `validator` rejects the update (its caller gets the error) without
    /// touching the history; `Ok` accepts it. It sees the state the
    /// durable history leads to, like a query. Updates without a
    /// validator are accepted.
    pub fn on_update_validator<A, F>(&self, name: &str, validator: F)
    where
        A: DeserializeOwned,
        F: Fn(A) -> Result<(), WorkflowError> + 'static,
    {
        let update = name.to_string();
        queries::add_validator(
            name,
            std::rc::Rc::new(move |args: &str| {
                let args = serde_json::from_str(args).map_err(|error| {
                    WorkflowError::new(
                        "InvalidUpdateArgs",
                        format!("the args of update `{update}` ({args}) do not fit: {error}"),
                    )
                })?;
                validator(args).map(|()| "null".to_string())
            }),
        );
    }

    /// Waits for the next update named one of `names` (oldest first, each
    /// delivered once), or `Ok(None)` when `timeout` (a durable deadline)
    /// passes. Answer it with [`Context::complete_update`]: its caller
    /// waits for that answer.
    pub fn await_update(
        &self,
        names: &[&str],
        timeout: Option<Duration>,
    ) -> Result<Option<Update>, Cancelled> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let timeout_ms = timeout.map(|timeout| timeout.as_millis() as u64);
        Ok(durable::await_update(&names, timeout_ms)?.map(|request| Update { request }))
    }

    /// Answers `update` (once): its caller gets the JSON of the output or
    /// the error, once the answer is durable.
    pub fn complete_update<R: Serialize>(&self, update: &Update, result: Result<R, WorkflowError>) {
        let result = result.and_then(|output| {
            encode_json(
                &output,
                &format!("the answer to update `{}`", update.request.name),
            )
        });
        let result = result.map_err(|error| wit::WorkflowError {
            error_type: error.error_type,
            message: error.message,
            details: error.details,
        });
        durable::complete_update(&update.request.update_id, result.as_deref());
    }

    /// Waits for one update named `name`, runs `handler` on its args and
    /// answers it with what the handler returns. `Ok(false)` if `timeout`
    /// passed first. A handler that fails with the workflow's cancellation
    /// (a [`Cancelled`] it passed on with `?`) answers the update with that
    /// error and returns it, so the workflow ends as cancelled — as
    /// `handle_update` does in the Python and TypeScript SDKs.
    pub fn handle_update<A, R, F>(
        &self,
        name: &str,
        timeout: Option<Duration>,
        handler: F,
    ) -> Result<bool, Cancelled>
    where
        A: DeserializeOwned,
        R: Serialize,
        F: FnOnce(A) -> Result<R, WorkflowError>,
    {
        let Some(update) = self.await_update(&[name], timeout)? else {
            return Ok(false);
        };
        let result = update.args().and_then(handler);
        let cancellation = match &result {
            Err(error) if error.error_type == CANCELLED_ERROR_TYPE => Some(Cancelled {
                message: error.message.clone(),
            }),
            _ => None,
        };
        self.complete_update(&update, result);
        match cancellation {
            Some(cancelled) => Err(cancelled),
            None => Ok(true),
        }
    }

    /// Starts building a call of activity `name`.
    pub fn activity(&self, name: &str) -> ActivityCall {
        ActivityCall {
            name: name.to_string(),
            input: Ok("null".to_string()),
            options: wit::ActivityOptions {
                retry: None,
                start_to_close_timeout_ms: None,
                schedule_to_close_timeout_ms: None,
                heartbeat_timeout_ms: None,
                compensates: None,
                idempotency_key: None,
            },
        }
    }

    /// Waits for the first of `handles` to complete (in history order) and
    /// returns its index in `handles` with its raw JSON outcome.
    pub fn await_any<T>(
        &self,
        handles: &[ActivityHandle<T>],
    ) -> (usize, Result<String, ActivityFailure>) {
        let seqs: Vec<u64> = handles.iter().map(|handle| handle.seq).collect();
        let (seq, outcome) = durable::await_any(&seqs);
        let index = seqs
            .iter()
            .position(|candidate| *candidate == seq)
            .unwrap_or(0);
        (index, outcome)
    }

    /// Waits until `n` of `handles` have completed and returns their
    /// outcomes in the order the history observed them (all of them if
    /// there are fewer than `n`).
    pub fn await_first_n<T: DeserializeOwned>(
        &self,
        mut handles: Vec<ActivityHandle<T>>,
        n: usize,
    ) -> Vec<Result<T, ActivityFailure>> {
        let mut outcomes = Vec::with_capacity(n.min(handles.len()));
        while outcomes.len() < n && !handles.is_empty() {
            let (index, outcome) = self.await_any(&handles);
            handles.remove(index);
            outcomes.push(outcome.and_then(|output| decode_output(&output)));
        }
        outcomes
    }

    /// Waits for every handle, in order.
    pub fn await_all<T: DeserializeOwned>(
        &self,
        handles: Vec<ActivityHandle<T>>,
    ) -> Vec<Result<T, ActivityFailure>> {
        handles.into_iter().map(ActivityHandle::wait).collect()
    }

    /// Starts building a child workflow of a registered type.
    pub fn child_workflow(&self, workflow_type: &str) -> ChildCall {
        ChildCall {
            workflow_type: workflow_type.to_string(),
            input: Ok("null".to_string()),
            workflow_id: None,
        }
    }

    pub fn info(&self) -> WorkflowInfo {
        durable::info()
    }

    /// A log line tied to this execution; silent while replaying.
    pub fn log(&self, level: LogLevel, message: &str) {
        durable::log(level, message)
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

/// An update delivered by [`Context::await_update`].
pub struct Update {
    request: durable::UpdateRequest,
}

impl Update {
    /// Unique within the execution: the caller's, or the server's choice.
    pub fn id(&self) -> &str {
        &self.request.update_id
    }

    pub fn name(&self) -> &str {
        &self.request.name
    }

    /// The args, decoded from JSON.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, WorkflowError> {
        serde_json::from_str(&self.request.args).map_err(|error| {
            WorkflowError::new(
                "InvalidUpdateArgs",
                format!(
                    "the args of update `{}` ({}) do not fit: {error}",
                    self.request.name, self.request.args
                ),
            )
        })
    }

    /// The args as the caller sent them (JSON).
    pub fn raw_args(&self) -> &str {
        &self.request.args
    }
}

fn encode_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, WorkflowError> {
    serde_json::to_string(value).map_err(|error| {
        WorkflowError::new(
            "SerializationError",
            format!("could not encode {what}: {error}"),
        )
    })
}

/// Values [`Context::random`] can produce.
pub trait RandomValue {
    const SIZE: usize;
    fn from_bytes(bytes: &[u8]) -> Self;
}

macro_rules! random_int {
    ($($ty:ty),*) => {$(
        impl RandomValue for $ty {
            const SIZE: usize = std::mem::size_of::<$ty>();
            fn from_bytes(bytes: &[u8]) -> Self {
                let mut buffer = [0u8; std::mem::size_of::<$ty>()];
                buffer.copy_from_slice(&bytes[..Self::SIZE]);
                <$ty>::from_le_bytes(buffer)
            }
        }
    )*};
}
random_int!(u8, u16, u32, u64, u128, i32, i64);

/// A call of one activity, being configured.
pub struct ActivityCall {
    name: String,
    input: Result<String, String>,
    options: wit::ActivityOptions,
}

impl ActivityCall {
    /// The input, serialized to JSON.
    pub fn input<T: Serialize + ?Sized>(mut self, input: &T) -> Self {
        self.input = serde_json::to_string(input).map_err(|error| error.to_string());
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = Some(policy);
        self
    }

    /// Limit on one attempt.
    pub fn start_to_close(mut self, timeout: Duration) -> Self {
        self.options.start_to_close_timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Limit on all attempts together.
    pub fn schedule_to_close(mut self, timeout: Duration) -> Self {
        self.options.schedule_to_close_timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Marks this call as the compensation of saga step `step` (the
    /// [`Saga`] sets it; histories show the chain).
    pub fn compensates(mut self, step: impl Into<String>) -> Self {
        self.options.compensates = Some(step.into());
        self
    }

    /// An attempt that does not heartbeat for this long fails (retryably).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.options.heartbeat_timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Use a key derived from business ids (e.g. `charge-{order_id}`)
    /// instead of the one the runtime derives.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.options.idempotency_key = Some(key.into());
        self
    }

    /// Schedules the activity without waiting for it.
    pub fn start<T: DeserializeOwned>(self) -> Result<ActivityHandle<T>, ActivityFailure> {
        let input = self
            .input
            .map_err(|message| encode_failure(&self.name, message))?;
        let seq = durable::start_activity(&self.name, &input, &self.options);
        Ok(ActivityHandle {
            seq,
            _output: PhantomData,
        })
    }

    /// Calls the activity and waits for its output.
    pub fn call<T: DeserializeOwned>(self) -> Result<T, ActivityFailure> {
        self.start::<T>()?.wait()
    }
}

/// A child workflow, being configured.
pub struct ChildCall {
    workflow_type: String,
    input: Result<String, String>,
    workflow_id: Option<String>,
}

impl ChildCall {
    /// The child's input, serialized to JSON.
    pub fn input<T: Serialize + ?Sized>(mut self, input: &T) -> Self {
        self.input = serde_json::to_string(input).map_err(|error| error.to_string());
        self
    }

    /// The child's workflow id (default: "<parent id>/child-<seq>").
    pub fn workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_id = Some(id.into());
        self
    }

    /// Starts the child without waiting for it.
    pub fn start<T: DeserializeOwned>(self) -> Result<ChildHandle<T>, WorkflowError> {
        let input = self.input.map_err(|message| {
            WorkflowError::new(
                "SerializationError",
                format!("could not encode the child's input: {message}"),
            )
        })?;
        let seq = durable::start_child(&self.workflow_type, &input, self.workflow_id.as_deref());
        Ok(ChildHandle {
            seq,
            _output: PhantomData,
        })
    }

    /// Runs the child and waits for its result.
    pub fn call<T: DeserializeOwned>(self) -> Result<T, WorkflowError> {
        self.start::<T>()?.wait()
    }
}

/// A child workflow started with [`ChildCall::start`]. Cancelling the
/// parent while it waits cancels the child.
pub struct ChildHandle<T> {
    seq: u64,
    _output: PhantomData<T>,
}

impl<T: DeserializeOwned> ChildHandle<T> {
    pub fn wait(self) -> Result<T, WorkflowError> {
        let output = durable::await_child(self.seq).map_err(|error| WorkflowError {
            error_type: error.error_type,
            message: error.message,
            details: error.details,
        })?;
        serde_json::from_str(&output).map_err(|error| {
            WorkflowError::new(
                "SerializationError",
                format!("could not decode the child's output {output}: {error}"),
            )
        })
    }
}

/// An activity started with [`ActivityCall::start`].
pub struct ActivityHandle<T> {
    seq: u64,
    _output: PhantomData<T>,
}

impl<T: DeserializeOwned> ActivityHandle<T> {
    /// Waits for the activity's output. If the workflow is cancelled
    /// meanwhile, this returns a `Cancelled` failure at once — while the
    /// call itself may still be in flight (see [`ActivityHandle::settle`]).
    pub fn wait(self) -> Result<T, ActivityFailure> {
        decode_output(&durable::await_activity(self.seq)?)
    }

    /// The activity's own outcome, waiting for it past any cancellation of
    /// the workflow: after [`ActivityHandle::wait`] said `Cancelled`, this
    /// tells whether the call took effect (to compensate it) or not. With
    /// the raw WIT: await the same handle again.
    pub fn settle(&self) -> Result<T, ActivityFailure> {
        loop {
            match durable::await_activity(self.seq) {
                Err(failure) if matches!(failure.reason, FailureReason::Cancelled) => continue,
                outcome => return decode_output(&outcome?),
            }
        }
    }
}

fn decode_output<T: DeserializeOwned>(output: &str) -> Result<T, ActivityFailure> {
    serde_json::from_str(output).map_err(|error| {
        decode_failure(format!(
            "could not decode the activity's output {output}: {error}"
        ))
    })
}

fn encode_failure(name: &str, message: String) -> ActivityFailure {
    decode_failure(format!("could not encode the input of `{name}`: {message}"))
}

fn decode_failure(message: String) -> ActivityFailure {
    ActivityFailure {
        reason: FailureReason::NonRetryable,
        attempts: 0,
        last_error: ActivityError::non_retryable("SerializationError", message),
    }
}

#[doc(hidden)]
pub fn __run_workflow<W: Workflow>(input: String) -> Result<String, wit::WorkflowError> {
    let to_wit = |error: WorkflowError| wit::WorkflowError {
        error_type: error.error_type,
        message: error.message,
        details: error.details,
    };
    let input: W::Input = serde_json::from_str(&input).map_err(|error| {
        to_wit(WorkflowError::new(
            "InvalidInput",
            format!("the workflow input does not match the expected type: {error}"),
        ))
    })?;
    let output = W::run(&Context::new(), input);
    // A query of a finished execution is answered from its final state.
    queries::answer_waiting_query();
    let output = output.map_err(to_wit)?;
    serde_json::to_string(&output).map_err(|error| {
        to_wit(WorkflowError::new(
            "SerializationError",
            format!("could not encode the workflow output: {error}"),
        ))
    })
}

/// Exports a type implementing [`Workflow`] as the component's `run`.
#[macro_export]
macro_rules! export_workflow {
    ($workflow:ty) => {
        struct __RepriseWorkflowExport;
        impl $crate::bindings::workflow::Guest for __RepriseWorkflowExport {
            fn run(
                input: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::bindings::workflow::reprise::workflow::types::WorkflowError,
            > {
                $crate::__run_workflow::<$workflow>(input)
            }
        }
        $crate::bindings::workflow::export_workflow_world!(__RepriseWorkflowExport);
    };
}

/// What an activity can learn about the call it serves.
pub mod activity {
    use super::bindings::activity::reprise::workflow::activity_context as host;

    /// The call an activity attempt serves.
    pub struct ActivityContext {
        _private: (),
    }

    impl ActivityContext {
        #[doc(hidden)]
        pub fn new() -> ActivityContext {
            ActivityContext { _private: () }
        }

        /// The same on every attempt and replay: pass it to providers.
        pub fn idempotency_key(&self) -> String {
            host::idempotency_key()
        }

        /// 1 for the first attempt.
        pub fn attempt(&self) -> u32 {
            host::attempt()
        }

        pub fn workflow_id(&self) -> String {
            host::workflow_id()
        }

        pub fn run_id(&self) -> String {
            host::run_id()
        }

        pub fn activity_name(&self) -> String {
            host::activity_name()
        }

        /// Tells the host this attempt is alive, with progress details a
        /// later attempt can read if this one fails.
        pub fn heartbeat<T: serde::Serialize>(&self, details: &T) {
            host::heartbeat(serde_json::to_string(details).ok().as_deref())
        }

        /// The details of the last heartbeat of an earlier attempt.
        pub fn last_heartbeat_details<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
            host::last_heartbeat_details().and_then(|details| serde_json::from_str(&details).ok())
        }

        /// This attempt's W3C trace context: send it as the `traceparent`
        /// header so what the activity calls joins the workflow's trace.
        pub fn traceparent(&self) -> String {
            host::traceparent()
        }
    }

    impl Default for ActivityContext {
        fn default() -> Self {
            ActivityContext::new()
        }
    }

    #[doc(hidden)]
    pub fn __call<I, O>(
        function: fn(&ActivityContext, I) -> Result<O, super::ActivityError>,
        input: &str,
    ) -> Result<String, super::ActivityError>
    where
        I: serde::de::DeserializeOwned,
        O: serde::Serialize,
    {
        let input: I = serde_json::from_str(input).map_err(|error| {
            super::ActivityError::non_retryable(
                "InvalidInput",
                format!("the activity input does not match the expected type: {error}"),
            )
        })?;
        let output = function(&ActivityContext::new(), input)?;
        serde_json::to_string(&output).map_err(|error| {
            super::ActivityError::non_retryable("SerializationError", error.to_string())
        })
    }
}

pub use activity::ActivityContext;

/// Exports activity functions under names:
///
/// ```ignore
/// fn add_one(_ctx: &ActivityContext, n: u64) -> Result<u64, ActivityError> { Ok(n + 1) }
/// reprise_sdk::export_activities! { "add-one" => add_one }
/// ```
#[macro_export]
macro_rules! export_activities {
    ($($name:literal => $function:path),+ $(,)?) => {
        struct __RepriseActivitiesExport;
        impl $crate::bindings::activity::exports::reprise::workflow::activities::Guest
            for __RepriseActivitiesExport
        {
            fn names() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![$(::std::string::String::from($name)),+]
            }
            fn run(
                name: ::std::string::String,
                input: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::ActivityError> {
                match name.as_str() {
                    $($name => $crate::activity::__call($function, &input),)+
                    other => ::std::result::Result::Err($crate::ActivityError::non_retryable(
                        "UnknownActivity",
                        ::std::format!("this component does not serve activity `{}`", other),
                    )),
                }
            }
        }
        $crate::bindings::activity::export_activity_world!(__RepriseActivitiesExport);
    };
}

/// Compensations, registered as steps succeed, run in reverse when the
/// workflow has to undo its work.
///
/// Each compensation is an activity call, journaled like any other, with a
/// stable idempotency key: after a crash in the middle of compensating,
/// replay skips the ones that finished and re-runs an interrupted one with
/// the same key — none runs twice to completion.
///
/// ```ignore
/// let mut saga = Saga::new();
/// let reservation: Value = ctx.activity("reserve").input(&trip).call()?;
/// saga.add_compensation("reserve", ctx.activity("release").input(&reservation));
/// if let Err(failure) = ctx.activity("charge").input(&trip).call::<Value>() {
///     let report = saga.compensate();
///     return Err(report.into_error(failure.into()));
/// }
/// ```
pub struct Saga {
    compensations: Vec<(String, ActivityCall)>,
    continue_on_failure: bool,
    parallel: bool,
}

/// How compensating went.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CompensationReport {
    /// Steps undone, in the order their compensations finished.
    pub compensated: Vec<String>,
    /// Steps whose compensation failed for good, with the error.
    pub failed: Vec<(String, String)>,
    /// Steps not compensated because an earlier compensation failed and the
    /// saga stops on failure.
    pub skipped: Vec<String>,
}

impl CompensationReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }

    /// The original error, with this report attached as its details.
    pub fn into_error(self, original: WorkflowError) -> WorkflowError {
        let summary = if self.is_complete() {
            format!("compensated: {}", self.compensated.join(", "))
        } else {
            format!(
                "compensated: {}; compensation failed: {}; skipped: {}",
                self.compensated.join(", "),
                self.failed
                    .iter()
                    .map(|(step, _)| step.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.skipped.join(", ")
            )
        };
        WorkflowError {
            error_type: original.error_type,
            message: format!("{} ({summary})", original.message),
            details: serde_json::to_string(&self).ok(),
        }
    }
}

impl Default for Saga {
    fn default() -> Self {
        Saga::new()
    }
}

impl Saga {
    /// An empty saga that compensates in reverse order, one at a time, and
    /// goes on when a compensation fails for good.
    pub fn new() -> Saga {
        Saga {
            compensations: Vec::new(),
            continue_on_failure: true,
            parallel: false,
        }
    }

    /// Whether to go on with the remaining compensations after one fails
    /// for good (default: yes, and report every failure).
    pub fn continue_on_failure(mut self, go_on: bool) -> Self {
        self.continue_on_failure = go_on;
        self
    }

    /// Run the compensations at once instead of one by one (when they are
    /// independent).
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// Runs forward step `step` and, once it has taken effect, registers
    /// the compensation `compensation` builds from its output.
    ///
    /// If the workflow is cancelled while the step is in flight, the saga
    /// first learns the step's own outcome: a step that took effect is
    /// compensated like the others (once), one that did not is not. The
    /// step then returns the cancellation, saying which it was.
    pub fn step<T: DeserializeOwned>(
        &mut self,
        step: &str,
        call: ActivityCall,
        compensation: impl FnOnce(&T) -> ActivityCall,
    ) -> Result<T, ActivityFailure> {
        let handle = call.start::<T>()?;
        let cancelled = match durable::await_activity(handle.seq) {
            Ok(output) => {
                let output: T = decode_output(&output)?;
                self.add_compensation(step, compensation(&output));
                return Ok(output);
            }
            Err(failure) if matches!(failure.reason, FailureReason::Cancelled) => failure,
            Err(failure) => return Err(failure),
        };
        let (attempts, what) = match handle.settle() {
            Ok(output) => {
                self.add_compensation(step, compensation(&output));
                (0, "it took effect and is compensated".to_string())
            }
            Err(failure) => (
                failure.attempts,
                format!(
                    "it did not take effect ({} after {} attempt(s))",
                    reason_text(failure.reason),
                    failure.attempts
                ),
            ),
        };
        Err(ActivityFailure {
            reason: FailureReason::Cancelled,
            attempts,
            last_error: ActivityError {
                message: format!(
                    "{} while step `{step}` was in flight; {what}",
                    cancelled.last_error.message
                ),
                ..cancelled.last_error
            },
        })
    }

    /// Registers the compensation of `step`, to run if the saga has to
    /// undo. Without a retry policy of its own, it retries until it
    /// succeeds (backoff from 1 s, capped at 60 s).
    pub fn add_compensation(&mut self, step: &str, call: ActivityCall) {
        let mut call = call.compensates(step);
        if call.options.retry.is_none() {
            call.options.retry = Some(
                RetryPolicy::new()
                    .initial_interval(Duration::from_secs(1))
                    .maximum_interval(Duration::from_secs(60)),
            );
        }
        self.compensations.push((step.to_string(), call));
    }

    /// Runs the registered compensations, most recent first.
    pub fn compensate(self) -> CompensationReport {
        let mut report = CompensationReport::default();
        let reversed: Vec<(String, ActivityCall)> = self.compensations.into_iter().rev().collect();
        if self.parallel {
            let started: Vec<(
                String,
                Result<ActivityHandle<serde_json::Value>, ActivityFailure>,
            )> = reversed
                .into_iter()
                .map(|(step, call)| (step, call.start()))
                .collect();
            for (step, handle) in started {
                match handle.and_then(ActivityHandle::wait) {
                    Ok(_) => report.compensated.push(step),
                    Err(failure) => report.failed.push((step, failure.last_error.message)),
                }
            }
            return report;
        }
        let mut stopped = false;
        for (step, call) in reversed {
            if stopped {
                report.skipped.push(step);
                continue;
            }
            match call.call::<serde_json::Value>() {
                Ok(_) => report.compensated.push(step),
                Err(failure) => {
                    report.failed.push((step, failure.last_error.message));
                    stopped = !self.continue_on_failure;
                }
            }
        }
        report
    }
}
