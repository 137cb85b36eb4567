//! What the layers read from a JSON-RPC request body, in one pass.
//!
//! ```text
//! {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}
//!   -> method "tools/call", tool "echo", called ["echo"]
//! [{"method":"tools/call","params":{"name":"a"}},{"method":"tools/list"}]
//!   -> no method or tool (a batch), called ["a"]
//! {"method":"tools/call","params":{"name":"a","name":"admin"}}
//!   -> called: ambiguous (refused by the tool-scope layer)
//! ```
//!
//! The tool-scope layer needs every tool a body calls, refusing a body
//! whose calls cannot be read unambiguously; the metrics, the span and the
//! audit record need the method and tool of a single message. Both come
//! from one walk over the body with serde's visitors: no tree of values is
//! built, strings are borrowed from the body unless escaped, and everything
//! besides `method`, `params` and `params.name` is skipped.
//!
//! Ambiguity is judged as strictly as before this walk existed (a tree of
//! values read last-wins, then a strict typed read when anything mentioned
//! `tools/call`; the tests keep that reading as the reference and compare
//! on many mutated bodies): once a body calls a tool, or merely contains the
//! bytes `tools/call`, every message in it must be an object with at most one
//! `method`, `params` and `params.name`, `method` and `name` strings or
//! null, `params` an object or null, and every `tools/call` must name its
//! tool with a string.

use std::{borrow::Cow, fmt};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Bytes of the body limit per JSON value a body may hold: a 4 MiB limit
/// admits 65 536 values. rmcp holds a request body as trees of values,
/// ~230 bytes each (`mcp-auth-bench --bodies`), so a 4 MiB body of `[0,0,…]` (two million values)
/// took ~470 MiB while it was read; bounded this way, a body's trees cost
/// a few times its limit, as a long string already does.
pub(crate) const BYTES_PER_VALUE: usize = 64;

/// The JSON values a body may hold under the body limit `max_body` (never
/// fewer than 1 024).
pub(crate) fn max_values(max_body: usize) -> usize {
    (max_body / BYTES_PER_VALUE).max(1024)
}

/// Whether `body` holds more than `max` JSON values and object keys, by
/// their separators outside strings (each `[`, `{`, `,` and `:`): one pass
/// over the bytes, nothing built. Bytes that are not JSON are counted the
/// same way (the service refuses them anyway).
pub(crate) fn over_values(body: &[u8], max: usize) -> bool {
    let mut n = 0usize;
    let mut bytes = body.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // Skip the string, escapes included.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'[' | b'{' | b',' | b':' => {
                n += 1;
                if n > max {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// What a request body says, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadBody {
    /// The method of a single, unambiguous message (not of a batch),
    /// bounded for labels (see [`crate::observe::bounded`]).
    pub(crate) method: Option<String>,
    /// Its tool, when the method is `tools/call` (bounded likewise).
    pub(crate) tool: Option<String>,
    /// Every tool the body calls, in order (one message or a batch), or
    /// `Err` when the body calls a tool but cannot be read unambiguously.
    /// A body that is not JSON calls nothing (the MCP service rejects it).
    pub(crate) called: Result<Vec<String>, ()>,
}

/// The tools a request's body calls (see [`ReadBody::called`]), put in the
/// request's extensions by `observe::FactsLayer`, which read the
/// body, together with that very body, so the tool-scope layer behind it in
/// `McpHttpApp`'s stack (where nothing between changes a body) need not
/// read and parse it again. Taken by that layer.
#[derive(Debug, Clone)]
pub(crate) struct CalledTools(pub(crate) Result<Vec<String>, ()>);

/// Reads `body` (see the [module docs](self)).
pub(crate) fn read(body: &[u8]) -> ReadBody {
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = match de
        .deserialize_any(TopVisitor)
        .and_then(|t| de.end().map(|()| t))
    {
        Ok(top) => top,
        // Not JSON: nothing is called (the MCP service answers it).
        Err(_) => {
            return ReadBody {
                method: None,
                tool: None,
                called: Ok(Vec::new()),
            };
        }
    };
    let (calls, single) = match top {
        Top::One(m) => {
            let mut calls = Calls::default();
            calls.add(&m);
            (calls, Some(m))
        }
        Top::Batch(calls) => (calls, None),
        Top::Other => (
            Calls {
                unclean: true,
                ..Calls::default()
            },
            None,
        ),
    };
    let mentions_call = !calls.names.is_empty() || calls.unnamed || may_spell_call(body);
    let called = match calls.unnamed || (mentions_call && calls.unclean) {
        true => Err(()),
        false => Ok(calls.names),
    };
    let (mut method, mut tool) = (None, None);
    if let Some(m) = single.filter(|m| m.readable())
        && let Scalar::Str(s) = &m.method
    {
        method = Some(crate::observe::bounded(s.clone().into_owned()));
        if s == "tools/call"
            && let Scalar::Str(n) = &m.name
        {
            tool = Some(crate::observe::bounded(n.clone().into_owned()));
        }
    }
    ReadBody {
        method,
        tool,
        called,
    }
}

/// Whether `body` may name `tools/call` somewhere: spelled out, or in any
/// string with an escape in it (`"tools\/call"`, `"\u0074ools/call"`), which
/// only decoding would tell. An unclean body (a duplicate key, say) that
/// may name it is refused: a service reading the first of two `method`
/// keys where rmcp reads the last could otherwise run a call this layer
/// never saw.
fn may_spell_call(body: &[u8]) -> bool {
    body.contains(&b'\\') || body.windows(10).any(|w| w == b"tools/call")
}

/// A JSON value where a string is wanted.
#[derive(Debug, Default)]
enum Scalar<'a> {
    /// Absent.
    #[default]
    Absent,
    /// `null`.
    Null,
    Str(Cow<'a, str>),
    /// Any other value.
    Other,
}

/// The parts of one message the layers look at.
#[derive(Debug, Default)]
struct Message<'a> {
    object: bool,
    /// A key among `method`, `params`, `params.name` appeared twice.
    duplicate: bool,
    method: Scalar<'a>,
    /// `params` was neither an object nor `null`.
    params_other: bool,
    name: Scalar<'a>,
}

impl Message<'_> {
    const NOT_AN_OBJECT: Self = Self {
        object: false,
        duplicate: false,
        method: Scalar::Absent,
        params_other: false,
        name: Scalar::Absent,
    };

    /// Read the same by every JSON parser, and typed as JSON-RPC types it.
    fn clean(&self) -> bool {
        self.readable() && !matches!(self.name, Scalar::Other)
    }

    /// Its method can be read unambiguously (for the metrics, the span and
    /// the record; a tool named by something else than a string is left out
    /// there).
    fn readable(&self) -> bool {
        self.object
            && !self.duplicate
            && !self.params_other
            && !matches!(self.method, Scalar::Other)
    }
}

enum Top<'a> {
    One(Message<'a>),
    /// A batch, summed up as its messages are read (not kept: a body of a
    /// million tiny elements must not become a million messages).
    Batch(Calls),
    Other,
}

/// What the messages read so far call.
#[derive(Default)]
struct Calls {
    /// The tools named by `tools/call` messages, in order.
    names: Vec<String>,
    /// A `tools/call` names no tool with a string.
    unnamed: bool,
    /// Some message is not [`clean`](Message::clean).
    unclean: bool,
}

impl Calls {
    fn add(&mut self, m: &Message<'_>) {
        self.unclean |= !m.clean();
        if let Scalar::Str(method) = &m.method
            && method == "tools/call"
        {
            match &m.name {
                Scalar::Str(name) if !self.unnamed => self.names.push(name.clone().into_owned()),
                _ => self.unnamed = true,
            }
        }
    }
}

/// The `visit_*` methods of a visitor for the scalars it keeps nothing of
/// but that they were not what it looks for (`str` too, when asked).
macro_rules! ignore_scalars {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    ($value:expr, str) => {
        ignore_scalars!($value);
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// A visitor used as a seed: whatever the value is, it decides.
macro_rules! any_value_seed {
    ($visitor:ident, $value:ident) => {
        impl<'de> de::DeserializeSeed<'de> for $visitor {
            type Value = $value<'de>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    ignore_scalars!(Top::Other, str);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Top::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        MessageVisitor.visit_map(map).map(Top::One)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut calls = Calls::default();
        while let Some(m) = seq.next_element_seed(MessageVisitor)? {
            calls.add(&m);
        }
        Ok(Top::Batch(calls))
    }
}

struct MessageVisitor;

any_value_seed!(MessageVisitor, Message);

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    ignore_scalars!(Message::NOT_AN_OBJECT, str);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Message::NOT_AN_OBJECT)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Message::NOT_AN_OBJECT)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = Message {
            object: true,
            ..Message::default()
        };
        let (mut seen_method, mut seen_params) = (false, false);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Method => {
                    m.duplicate |= std::mem::replace(&mut seen_method, true);
                    m.method = map.next_value_seed(ScalarVisitor)?;
                }
                Key::Params => {
                    m.duplicate |= std::mem::replace(&mut seen_params, true);
                    let params = map.next_value_seed(ParamsVisitor)?;
                    m.params_other = params.other;
                    m.duplicate |= params.duplicate;
                    m.name = params.name;
                }
                Key::Name | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(m)
    }
}

/// A key of a message or of its `params`: only the names looked at are
/// told apart (escaped or not: serde_json hands over the decoded key).
enum Key {
    Method,
    Params,
    Name,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "method" => Key::Method,
                    "params" => Key::Params,
                    "name" => Key::Name,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

struct ScalarVisitor;

any_value_seed!(ScalarVisitor, Scalar);

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    ignore_scalars!(Scalar::Other);

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

#[derive(Default)]
struct Params<'a> {
    other: bool,
    duplicate: bool,
    name: Scalar<'a>,
}

impl Params<'_> {
    /// `params` that are neither an object nor `null`.
    const OTHER: Self = Self {
        other: true,
        duplicate: false,
        name: Scalar::Absent,
    };
}

struct ParamsVisitor;

any_value_seed!(ParamsVisitor, Params);

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("params")
    }

    ignore_scalars!(Params::OTHER, str);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Params::OTHER)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut p = Params::default();
        let mut seen = false;
        while let Some(key) = map.next_key::<Key>()? {
            if let Key::Name = key {
                p.duplicate |= std::mem::replace(&mut seen, true);
                p.name = map.next_value_seed(ScalarVisitor)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Values and keys are counted by their separators outside strings;
    /// an escaped quote does not end a string.
    #[test]
    fn values_are_counted_outside_strings() {
        let count = |body: &str| (0..64).find(|&max| !over_values(body.as_bytes(), max));
        for (body, n) in [
            ("", 0),
            ("0", 0),
            ("[]", 1),
            ("[0,0,0]", 3),
            (r#"{"a":1,"b":[{}]}"#, 6),
            (r#""[,{:""#, 0),
            (r#"["\",[", 1]"#, 2),
            (r#"["\\", [1]]"#, 3),
            (r#"{"a\"b":"c\\"}"#, 2),
            // An unterminated string holds the rest.
            (r#"["a, [1, 2]"#, 1),
        ] {
            assert_eq!(count(body), Some(n), "{body}");
        }
        assert_eq!(max_values(4 * 1024 * 1024), 65_536);
        assert_eq!(max_values(1000), 1024);
    }

    /// How bodies were read before this walk: a tree of values read
    /// last-wins, then, when anything mentioned `tools/call`, a strict typed
    /// read that must agree; and the observing layer's typed read of one
    /// message. The walk must say exactly what these said, except where they
    /// had quirks it drops on purpose (`None`): serde's derived structs also
    /// read an array as a message or as `params`, positionally (the walk
    /// takes only objects: so `{"method":"x","params":["tools/call"]}` is
    /// refused, as any ambiguity); and a body whose skipped parts hold what
    /// the tree of values refuses (a lone surrogate escape) was let through
    /// as "not JSON". (rmcp refuses such a body too: its untagged message
    /// type buffers every value and checks every string. The walk skips
    /// those parts without checking them, so it still finds and checks the
    /// calls: the safe side.) Changed in both since: an escape anywhere
    /// counts as a possible mention of `tools/call` (see `may_spell_call`).
    fn reference(body: &[u8]) -> Option<ReadBody> {
        let tree = serde_json::from_slice::<serde_json::Value>(body);
        if tree.is_err() && serde_json::from_slice::<IgnoredAny>(body).is_ok() {
            return None;
        }
        if let Ok(tree) = &tree {
            let messages = match tree {
                serde_json::Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let positional = |m: &serde_json::Value| {
                m.is_array() || m.get("params").is_some_and(|p| p.is_array())
            };
            if messages.into_iter().any(positional)
                || tree
                    .as_array()
                    .and_then(|a| a.first())
                    .is_some_and(|m| !m.is_object())
            {
                return None;
            }
        }
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(borrow, default)]
            method: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            params: Option<ProbeParams<'a>>,
        }
        #[derive(Deserialize)]
        struct ProbeParams<'a> {
            #[serde(borrow, default)]
            name: Option<Cow<'a, str>>,
        }
        let called = (|| {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
                return Ok(Vec::new());
            };
            let messages = match &value {
                serde_json::Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let mut names = Vec::new();
            for m in messages {
                if m.get("method").and_then(|v| v.as_str()) == Some("tools/call") {
                    match m.pointer("/params/name").and_then(|v| v.as_str()) {
                        Some(n) => names.push(n.to_owned()),
                        None => return Err(()),
                    }
                }
            }
            let mentions_call =
                body.contains(&b'\\') || body.windows(10).any(|w| w == b"tools/call");
            if names.is_empty() && !mentions_call {
                return Ok(names);
            }
            let strict = |p: Probe<'_>| match (p.method.as_deref(), p.params.and_then(|x| x.name)) {
                (Some("tools/call"), Some(name)) => Some(name.into_owned()),
                _ => None,
            };
            let strict_names: Option<Vec<String>> = if value.is_array() {
                serde_json::from_slice::<Vec<Probe<'_>>>(body)
                    .ok()
                    .map(|b| b.into_iter().filter_map(strict).collect())
            } else {
                serde_json::from_slice::<Probe<'_>>(body)
                    .ok()
                    .map(|p| strict(p).into_iter().collect())
            };
            match strict_names {
                Some(s) if s == names => Ok(names),
                _ => Err(()),
            }
        })();
        #[derive(Deserialize)]
        struct Params {
            name: Option<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct Message {
            method: Option<String>,
            params: Option<Params>,
        }
        let (method, tool) = match serde_json::from_slice::<Message>(body) {
            Ok(m) => {
                let tool = (m.method.as_deref() == Some("tools/call"))
                    .then(|| m.params.and_then(|p| p.name))
                    .flatten()
                    .and_then(|n| n.as_str().map(|n| crate::observe::bounded(n.to_owned())));
                (m.method.map(crate::observe::bounded), tool)
            }
            Err(_) => (None, None),
        };
        Some(ReadBody {
            method,
            tool,
            called,
        })
    }

    #[test]
    fn tools_methods_and_ambiguity_are_read_as_before() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[1,2]}}}"#[..],
            br#"[{"method":"tools/call","params":{"name":"a"}},{"method":"tools/list"},{"method":"tools/call","params":{"name":"b"}}]"#,
            br#"{"method":"tools/list"}"#,
            b"not json",
            br#"{"method":"tools/list","params":{"cursor":"tools/call"}}"#,
            br#"{"method":"tools/call","params":{"name":"ad\u006din"}}"#,
            br#"{"meth\u006fd":"tools/call","par\u0061ms":{"n\u0061me":"admin"}}"#,
            br#"{"method":"tools/call","params":{"name":"get_time","name":"admin"}}"#,
            br#"{"method":"tools/list","method":"tools/call","params":{"name":"admin"}}"#,
            br#"{"method":"tools/call","params":{"arguments":{}}}"#,
            br#"{"method":"tools/call","params":{"name":7}}"#,
            br#"[{"method":"tools/call","params":{"name":"a","name":"b"}}]"#,
            br#"{"method":"tools/call","method":"tools/list","params":{"name":"admin"}}"#,
            br#"{"method":"a","method":"b"}"#,
            br#"{"method":"a","method":"b","x":"tools/call"}"#,
            br#""tools/call""#,
            br#"{"method":"tools/call","params":null}"#,
            br#"{"method":null,"params":{"name":"a"},"x":"tools/call"}"#,
            br#"{"method":"tools/call","params":{"name":null}}"#,
            br#"{"method":["tools/call"],"params":{"name":"a"}}"#,
            br#"{"method":"tools/call","params":{"name":"a"}} trailing"#,
            br#"{"method":"tools/call","params":{"name":"a"}}  "#,
            br#"{"method":"tools\/call","params":{"name":"admin"},"method":null}"#,
            br#"{"method":"\u0074ools/call","params":{"name":"admin"},"method":"x"}"#,
            br#"{"method":"tools/list","params":{"cursor":"\n"}}"#,
            br#"[]"#,
            br#"{}"#,
        ] {
            let want = reference(body).expect("no quirk");
            assert_eq!(read(body), want, "{}", String::from_utf8_lossy(body));
        }
        // Where the walk is stricter than the old reading, on purpose.
        let positional = read(br#"{"method":"x","params":["tools/call"]}"#);
        assert_eq!(positional.called, Err(()));
        let array_message = read(br#"["tools/call",{"name":"admin"}]"#);
        assert_eq!(array_message.called, Err(()));
        assert_eq!(array_message.method, None);
        for body in [
            &br#"[1,"tools/call",{"method":"tools/list"}]"#[..],
            br#"{"method":"tools/call","params":[1]}"#,
        ] {
            assert_eq!(read(body).called, Err(()));
        }
        assert_eq!(read(br#"[1,{"method":"tools/list"}]"#).called, Ok(vec![]));
        let surrogate = read(br#"{"method":"tools/call","params":{"name":"admin"},"x":"\ud800"}"#);
        assert_eq!(surrogate.called, Ok(vec!["admin".to_owned()]));
        let one = read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#);
        assert_eq!(
            (one.method.as_deref(), one.tool.as_deref(), one.called),
            (
                Some("tools/call"),
                Some("whoami"),
                Ok(vec!["whoami".to_owned()])
            )
        );
        assert_eq!(
            read(br#"{"method":"tools/call","params":{"name":"a","name":"b"}}"#).called,
            Err(())
        );
    }

    #[test]
    fn an_escaped_tools_call_in_an_unclean_body_is_refused() {
        // A service reading the first `method` would run `admin`; rmcp,
        // reading the last, would not: refused either way.
        for body in [
            &br#"{"method":"tools\/call","params":{"name":"admin"},"method":null}"#[..],
            br#"{"method":"\u0074ools/call","params":{"name":"admin"},"method":"x"}"#,
            br#"[{"method":"tools\u002fcall","params":{"name":"admin"},"method":null}]"#,
        ] {
            assert_eq!(
                read(body).called,
                Err(()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An escape in a clean body changes nothing.
        assert_eq!(
            read(br#"{"method":"tools/call","params":{"name":"a\nb"}}"#).called,
            Ok(vec!["a\nb".to_owned()])
        );
    }

    /// Many bodies made by cutting, repeating and swapping pieces of
    /// messages: the walk and the reference agree on every one.
    #[test]
    fn mutated_bodies_are_read_as_before() {
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"method\"",
            "\"params\"",
            "\"name\"",
            "\"tools/call\"",
            "\"tools/list\"",
            "\"a\"",
            "\"ad\\u006din\"",
            "\"meth\\u006fd\"",
            "null",
            "7",
            "true",
            "\"arguments\"",
            "{}",
            "[]",
            " ",
            "\"tools\\/call\"",
            "\"x\"",
            "1.5e3",
            "\"\\ud800\"",
            "\"é\"",
        ];
        const SEEDS: &[&str] = &[
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}"#,
            r#"[{"method":"tools/call","params":{"name":"a"}},{"method":"tools/list"}]"#,
            r#"{"method":"tools/list","params":{"cursor":"x"}}"#,
        ];
        // A small deterministic generator (xorshift), so a failure repeats.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut agreed, mut quirks, mut errs) = (0, 0, 0);
        for _ in 0..40_000 {
            let mut body = SEEDS[next(SEEDS.len())].to_owned();
            for _ in 0..1 + next(2) {
                let at = body.floor_char_boundary(next(body.len() + 1));
                match next(3) {
                    0 => body.insert_str(at, PIECES[next(PIECES.len())]),
                    1 => {
                        let end = body.floor_char_boundary(at + next(12));
                        body.replace_range(at..end, "");
                    }
                    _ => {
                        let end = body.floor_char_boundary(at + next(24));
                        let copy = body[at..end].to_owned();
                        body.insert_str(end, &copy);
                    }
                }
            }
            let Some(want) = reference(body.as_bytes()) else {
                quirks += 1;
                continue;
            };
            assert_eq!(read(body.as_bytes()), want, "{body}");
            agreed += usize::from(want.method.is_some() || want.called != Ok(vec![]));
            errs += usize::from(want.called.is_err());
        }
        // The mutations keep enough bodies meaningful to test something.
        assert!(
            agreed > 5_000,
            "only {agreed} bodies named a method or a call"
        );
        assert!(errs > 300, "only {errs} ambiguous bodies");
        assert!(
            quirks < 4_000,
            "{quirks} bodies left out as the old reading's quirks"
        );
    }
}
