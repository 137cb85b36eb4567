//! The `conformance` command: the entry point the official MCP conformance
//! suite runs for each client scenario. It appends the scenario server's
//! URL and passes the scenario's name (`MCP_CONFORMANCE_SCENARIO`) and
//! settings (`MCP_CONFORMANCE_CONTEXT`, JSON: pre-registered credentials,
//! keys, the tool calls to make) in the environment.
//!
//! The client logs in the way the server asks, as it does for a person
//! (without a browser: the suite's authorization servers approve at
//! once), then exercises the server: it lists the tools and calls the
//! first with arguments made from its input schema, or makes the calls the
//! scenario names.

use mcp_auth_client::{
    Auth, ClientError, Grant, MachineClient, MachineOptions, OAuthOptions, SigningAlgorithm,
    TokenEndpoint, Wire, discover_issuer,
};
use mcp_auth_core::settings::{Lookup, ProcessEnv};
use rmcp::model::{CallToolRequestParams, JsonObject, Tool};
use serde_json::Value;

/// The client ID metadata document URL the suite's authorization servers
/// expect from a client that uses one (`auth/basic-cimd`), used when the
/// context names none. The suite never fetches it.
const SUITE_METADATA_DOCUMENT: &str = "https://conformance-test.local/client-metadata.json";

/// Pins the scenario's credentials (a client secret, a key, an
/// assertion), which the client sends only to a pinned authorization
/// server, to the issuer the suite's server at `url` names
/// ([`discover_issuer`]). The suite hands out the server and the
/// credentials together, so its server's choice is the one the credentials
/// were made for; a scenario without such credentials is left as it is.
pub async fn pin_issuer(url: &str, auth: &mut Auth) -> Result<(), ClientError> {
    let unpinned = match auth {
        Auth::OAuth(opts) => (opts.client_secret.is_some() && opts.client_issuer.is_none())
            .then_some(&mut opts.client_issuer),
        Auth::Machine(opts) => opts.issuer.is_none().then_some(&mut opts.issuer),
        _ => None,
    };
    if let Some(issuer) = unpinned {
        *issuer = discover_issuer(url, Wire::Auto).await?;
    }
    Ok(())
}

/// One scenario: its name and settings.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// `MCP_CONFORMANCE_SCENARIO` (e.g. `auth/scope-step-up`).
    pub name: String,
    /// `MCP_CONFORMANCE_CONTEXT`, an object (empty when unset or not JSON).
    pub context: JsonObject,
}

impl Scenario {
    /// The scenario from the process environment (the suite sets both
    /// variables for this run only, so they are never read from `.env`).
    pub fn from_env() -> Self {
        let context = ProcessEnv
            .get("MCP_CONFORMANCE_CONTEXT")
            .and_then(|c| serde_json::from_str::<Value>(&c).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        Self {
            name: ProcessEnv
                .get("MCP_CONFORMANCE_SCENARIO")
                .unwrap_or_default(),
            context,
        }
    }

    /// A string setting of the context.
    pub fn field(&self, key: &str) -> Option<String> {
        self.context
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// How to authenticate. The machine-to-machine scenarios (the suite's
    /// auth extensions) by their grant: client credentials with the
    /// context's secret or private key, workload identity with its JWT,
    /// enterprise-managed authorization with the IdP's ID token. Every
    /// other scenario: OAuth with the context's pre-registered client, else
    /// a client ID metadata document where the authorization server
    /// supports them, else dynamic registration.
    pub fn auth(&self) -> Result<Auth, ClientError> {
        let missing = |key: &str| ClientError::AuthRequired(format!("the context has no {key}"));
        let field = |key: &str| self.field(key).ok_or_else(|| missing(key));
        let grant = match self.name.as_str() {
            name if name.starts_with("auth/client-credentials-") => {
                let client = match self.field("private_key_pem") {
                    Some(pem) => {
                        let algorithm = self
                            .field("signing_algorithm")
                            .unwrap_or_else(|| "ES256".into())
                            .parse::<SigningAlgorithm>()
                            .map_err(|e| ClientError::AuthRequired(e.to_string()))?;
                        MachineClient::private_key(field("client_id")?, pem, algorithm)
                            .map_err(|e| ClientError::AuthRequired(e.to_string()))?
                    }
                    None => MachineClient::secret(field("client_id")?, field("client_secret")?),
                };
                Some(Grant::ClientCredentials(client))
            }
            "auth/wif-jwt-bearer" => Some(Grant::Workload {
                assertion: field("valid_jwt")?,
                client: MachineClient::public(field("client_id")?),
            }),
            "auth/enterprise-managed-authorization" => {
                let mut idp = TokenEndpoint::new(field("idp_token_endpoint")?);
                if let Some(issuer) = self.field("idp_issuer") {
                    idp = idp.with_issuer(issuer);
                }
                Some(Grant::Enterprise {
                    idp,
                    idp_client: MachineClient::public(field("idp_client_id")?),
                    id_token: field("idp_id_token")?,
                    client: MachineClient::secret(field("client_id")?, field("client_secret")?),
                })
            }
            _ => None,
        };
        if let Some(grant) = grant {
            return Ok(Auth::Machine(Box::new(MachineOptions::new(grant))));
        }
        Ok(Auth::OAuth(OAuthOptions {
            client_id: self.field("client_id"),
            client_secret: self.field("client_secret"),
            client_metadata_url: Some(
                self.field("client_metadata_url")
                    .unwrap_or_else(|| SUITE_METADATA_DOCUMENT.to_owned()),
            ),
            callback_port: 0,
            open_browser: false,
            headless: true,
            persist: false,
            timeout: std::time::Duration::from_secs(60),
            ..OAuthOptions::default()
        }))
    }

    /// The tool calls to make, given the server's tools: the context's
    /// `toolCalls` when it has them; for the request-state scenario every
    /// tool; for the schema-preservation scenario the echo tool with the
    /// other tool's input schema, verbatim; else the first tool, with
    /// arguments made from its schema ([`arguments_for`]).
    pub fn calls(&self, tools: &[Tool]) -> Vec<CallToolRequestParams> {
        let call = |name: &str, args: JsonObject| {
            CallToolRequestParams::new(name.to_owned()).with_arguments(args)
        };
        if let Some(Value::Array(listed)) = self.context.get("toolCalls") {
            return listed
                .iter()
                .filter_map(|c| {
                    let name = c.get("name")?.as_str()?;
                    let args = match c.get("arguments") {
                        Some(Value::Object(a)) => a.clone(),
                        _ => JsonObject::new(),
                    };
                    Some(call(name, args))
                })
                .collect();
        }
        match self.name.as_str() {
            "sep-2322-client-request-state" => tools
                .iter()
                .map(|t| call(&t.name, arguments_for(t)))
                .collect(),
            "json-schema-2020-12-preservation" => {
                let echo = tools.iter().find(|t| t.name == "json_schema_echo");
                let focal = tools.iter().find(|t| t.name != "json_schema_echo");
                match (echo, focal) {
                    (Some(echo), Some(focal)) => {
                        let mut args = JsonObject::new();
                        args.insert(
                            "schema".into(),
                            Value::Object((*focal.input_schema).clone()),
                        );
                        vec![call(&echo.name, args)]
                    }
                    _ => Vec::new(),
                }
            }
            _ => tools
                .first()
                .map(|t| call(&t.name, arguments_for(t)))
                .into_iter()
                .collect(),
        }
    }
}

/// Arguments for `tool`: a value of the declared type for each required
/// property (numbers 1, strings `"x"`, booleans `true`, objects `{}`,
/// arrays `[]`), so a tool that needs arguments can be called at all.
pub fn arguments_for(tool: &Tool) -> JsonObject {
    let schema = &tool.input_schema;
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut args = JsonObject::new();
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let kind = properties
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("string");
        let value = match kind {
            "number" | "integer" => Value::from(1),
            "boolean" => Value::Bool(true),
            "object" => Value::Object(JsonObject::new()),
            "array" => Value::Array(Vec::new()),
            _ => Value::from("x"),
        };
        args.insert(name.to_owned(), value);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, schema: Value) -> Tool {
        let Value::Object(schema) = schema else {
            panic!("not an object")
        };
        Tool::new(name.to_owned(), "", std::sync::Arc::new(schema))
    }

    #[test]
    fn required_arguments_get_a_value_of_their_type() {
        let t = tool(
            "add_numbers",
            serde_json::json!({"type":"object","properties":{"a":{"type":"number"},"b":{"type":"integer"},"s":{"type":"string"},"f":{"type":"boolean"},"o":{"type":"string"}},"required":["a","b","s","f"]}),
        );
        assert_eq!(
            Value::Object(arguments_for(&t)),
            serde_json::json!({"a":1,"b":1,"s":"x","f":true})
        );
    }

    #[test]
    fn the_context_tool_calls_win() {
        let scenario = Scenario {
            name: "http-custom-headers".into(),
            context: serde_json::from_value(serde_json::json!({"toolCalls":[
                {"name":"one","arguments":{"region":"eu"}},{"name":"two","arguments":{"v":null}}]}))
            .unwrap(),
        };
        let calls = scenario.calls(&[tool("other", serde_json::json!({"type":"object"}))]);
        let names: Vec<_> = calls.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(
            calls[1].arguments.as_ref().and_then(|a| a.get("v")),
            Some(&Value::Null)
        );
    }

    #[test]
    fn the_echo_gets_the_other_schema_verbatim() {
        let focal = serde_json::json!({"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","$defs":{"a":{"$anchor":"x"}},"additionalProperties":false});
        let scenario = Scenario {
            name: "json-schema-2020-12-preservation".into(),
            context: JsonObject::new(),
        };
        let calls = scenario.calls(&[
            tool("json_schema_2020_12_tool", focal.clone()),
            tool("json_schema_echo", serde_json::json!({"type":"object"})),
        ]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "json_schema_echo");
        assert_eq!(
            calls[0].arguments.as_ref().and_then(|a| a.get("schema")),
            Some(&focal)
        );
    }
}
