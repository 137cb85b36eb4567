//! Names that look like this project's settings but that the server does
//! not read: a misspelt `COGNITO_REQUIRED_GROUP` would otherwise leave
//! every user of the pool let in without a word.
//!
//! ```text
//! WARN mcp_auth_server: not a setting the server reads: did you mean COGNITO_REQUIRED_GROUPS? variable=COGNITO_REQUIRED_GROUP
//! ```
//!
//! (Outside the documentation test's look for variable names in the
//! sources: the names here are not settings.)

use crate::settings::{FOR_OTHERS, NOT_YET, known};

/// Read by the project's other programs (the client, the Cognito admin
/// CLI): not reported.
const OTHER_PROGRAMS: &[&str] = &[
    "MCP_API_KEY",
    "MCP_AUTH_CLIENT_HOME",
    "MCP_CONFORMANCE_CONTEXT",
    "MCP_CONFORMANCE_SCENARIO",
    "COGNITO_DOMAIN_PREFIX",
    "COGNITO_POOL_NAME",
    "COGNITO_RESOURCE_SCOPES",
    "COGNITO_TEST_USER_EMAIL",
    "COGNITO_TEST_USER_PASSWORD",
];

/// Names set in the environment or in `.env` (`dotenv_names`) that look
/// like this project's settings but that the server does not read, each
/// with the known name it is closest to (at most two edits away, a plural
/// read as its singular), if any:
/// a misspelt `COGNITO_REQUIRED_GROUP` would otherwise leave every user of
/// the pool let in without a word. Names under the project's prefixes
/// (`MCP_`, `HTTP_`, `COGNITO_`) are reported whatever they are; others
/// when their first word is a prefix misspelt by one letter or a swap
/// (`COGNTIO_…`, `MPC_…`) and the whole is two such edits from a known
/// name.
pub fn unknown(
    env_names: impl IntoIterator<Item = String>,
    dotenv_names: impl IntoIterator<Item = String>,
) -> Vec<(String, Option<&'static str>)> {
    let known = known();
    let names: Vec<String> = env_names.into_iter().chain(dotenv_names).collect();
    // Kubernetes gives each container its Services' addresses: for a
    // Service `mcp-server`, `MCP_SERVER_SERVICE_HOST`, `…_SERVICE_PORT`,
    // `MCP_SERVER_PORT` and `MCP_SERVER_PORT_8001_TCP…`. Not settings, and
    // not misspellings.
    let services: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix("_SERVICE_HOST"))
        .collect();
    let service_link = |name: &str| {
        services.iter().any(|svc| {
            name.strip_prefix(svc).is_some_and(|rest| {
                rest == "_PORT" || rest.starts_with("_PORT_") || rest.starts_with("_SERVICE_")
            })
        })
    };
    let mut out: Vec<(String, Option<&'static str>)> = Vec::new();
    for name in names.iter().cloned() {
        // Names are read as they are written: `cognito_required_groups` is
        // not `COGNITO_REQUIRED_GROUPS` (only the TOML file takes any case),
        // so a name in another case is reported too.
        let upper = name.to_ascii_uppercase();
        // `HTTP_PROXY` belongs to the HTTP clients underneath (the only one
        // of their names under our prefixes: `HTTP_TRUSTED_PROXY` is a
        // misspelling).
        let ours = ["MCP_", "HTTP_", "COGNITO_"]
            .iter()
            .any(|p| upper.starts_with(p));
        let read = |n: &str| {
            known.contains(&n)
                || NOT_YET.contains(&n)
                || FOR_OTHERS.contains(&n)
                || OTHER_PROGRAMS.contains(&n)
        };
        if upper == "HTTP_PROXY"
            || read(&name)
            || service_link(&name)
            || out.iter().any(|(n, _)| *n == name)
        {
            continue;
        }
        // Outside the prefixes only a misspelt prefix is one of ours (its
        // first word one letter off, or two swapped: `COGNTIO`, `MPC`), and
        // the rest one edit off at most; everyone's `RUSTFLAGS` or
        // `CI_SERVER_URL` is not.
        let prefix_near = upper.split('_').next().is_some_and(|first| {
            ["MCP", "HTTP", "COGNITO"]
                .iter()
                .any(|p| first != *p && swaps_or_edits(first, p) <= 1)
        });
        if !ours && !prefix_near {
            continue;
        }
        let closest = known
            .iter()
            .map(|k| match ours {
                true => (edits(&upper, k).min(edits(&stem(&upper), &stem(k))), *k),
                false => (swaps_or_edits(&upper, k), *k),
            })
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k);
        if ours || closest.is_some() {
            out.push((name, closest));
        }
    }
    out
}

/// `name` with a plural ending read as singular (`PROXIES` as `PROXY`,
/// `GROUPS` as `GROUP`).
fn stem(name: &str) -> String {
    match name.strip_suffix("IES") {
        Some(s) => format!("{s}Y"),
        None => name.strip_suffix('S').unwrap_or(name).to_owned(),
    }
}

/// The edit distance of `a` and `b` counting a swap of two neighbouring
/// letters as one edit (optimal string alignment).
fn swaps_or_edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The edit distance of `a` and `b` (insertions, deletions, substitutions).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that looks like a setting but is read by nothing here is
    /// reported, with the known name it is likely a misspelling of.
    #[test]
    fn misspelt_settings_are_named_with_what_they_likely_meant() {
        let group = "COGNITO_REQUIRED_GROUP".to_owned();
        let dpop = "MCP_DPOP_MODE".to_owned();
        let timeout = "HTTP_SESION_TIMEOUT".to_owned();
        let other = "MCP_SOMETHING_ELSE_ENTIRELY".to_owned();
        let got = unknown(
            [
                group.clone(),
                dpop.clone(),
                "PATH".to_owned(),
                "MCP_API_KEYS".to_owned(),
                "HTTP_PROXY".to_owned(),
                "MCP_API_KEY".to_owned(),
                "MCPX_NOT_OURS".to_owned(),
                "cognito_required_groups".to_owned(),
                "http_proxy".to_owned(),
                // A misspelt prefix, or a misspelt name ending in _PROXY
                // (an attack pass: all three went unreported).
                "COGNTIO_REQUIRED_GROUPS".to_owned(),
                "MPC_OAUTH_REQUIRED_SCOPES".to_owned(),
                "HTTP_TRUSTED_PROXY".to_owned(),
                // Everyone's variables are left alone, and Kubernetes'
                // links to a Service named `mcp-server` (or `mcp`).
                "HOSTNAME".to_owned(),
                "HTTPS_PROXY".to_owned(),
                "LANGUAGE".to_owned(),
                "MCP_SERVER_SERVICE_HOST".to_owned(),
                "MCP_SERVER_SERVICE_PORT".to_owned(),
                "MCP_SERVER_SERVICE_PORT_HTTP".to_owned(),
                "MCP_SERVER_PORT".to_owned(),
                "MCP_SERVER_PORT_8001_TCP_ADDR".to_owned(),
                "MCP_SERVICE_HOST".to_owned(),
                "MCP_PORT".to_owned(),
                // CI systems' (a review: these were taken for misspellings
                // of RUST_LOG and MCP_SERVER_URL).
                "RUSTFLAGS".to_owned(),
                "CI_SERVER_URL".to_owned(),
                "CI_SERVER_NAME".to_owned(),
            ],
            [timeout.clone(), group.clone(), other.clone()],
        );
        assert_eq!(
            got,
            [
                (group, Some("COGNITO_REQUIRED_GROUPS")),
                (dpop, None),
                (
                    "cognito_required_groups".to_owned(),
                    Some("COGNITO_REQUIRED_GROUPS")
                ),
                (
                    "COGNTIO_REQUIRED_GROUPS".to_owned(),
                    Some("COGNITO_REQUIRED_GROUPS")
                ),
                (
                    "MPC_OAUTH_REQUIRED_SCOPES".to_owned(),
                    Some("MCP_OAUTH_REQUIRED_SCOPES")
                ),
                (
                    "HTTP_TRUSTED_PROXY".to_owned(),
                    Some("HTTP_TRUSTED_PROXIES")
                ),
                (timeout, Some("HTTP_SESSION_TIMEOUT")),
                (other, None),
            ]
        );
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("", "ab"), 2);
    }
}
