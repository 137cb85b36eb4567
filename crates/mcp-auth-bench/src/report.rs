//! Reports: the Markdown table of every mode against no-auth, our
//! throughput against the peers', the facade's and DPoP-bound tokens
//! against `oauth2`'s, the facade's token endpoint, and the idle-session
//! memory line, printed to stdout.

use crate::{
    facade::StepOutcome,
    measure::{IdleMemory, Outcome},
    process::PEER_MODES,
};

/// Prints the table of `outcomes` (ratios against the `none` mode, if run)
/// and the throughput of `oauth2`/`oauth2-distinct` against the peers.
pub(crate) fn outcomes(outcomes: &[Outcome]) {
    let baseline = outcomes
        .iter()
        .find(|o| o.mode == "none")
        .map(|o| (o.rate(), o.p99, o.cpu_per_request()));
    println!(
        "| mode | requests/s | p50 | p99 | errors | peak RSS | server CPU per call | throughput vs none | p99 vs none | server CPU vs none |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let (ratio, dp99, dcpu) = match baseline {
            Some((rate, p99, cpu)) => (
                format!("{:.2}×", o.rate() / rate),
                format!("{:+.3} ms", (o.p99.as_secs_f64() - p99.as_secs_f64()) * 1e3),
                format!(
                    "{:.2}×",
                    o.cpu_per_request().as_secs_f64() / cpu.as_secs_f64().max(1e-9)
                ),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {:.0} | {:.3} ms | {:.3} ms | {} | {:.1} MiB | {:.1} µs | {ratio} | {dp99} | {dcpu} |",
            o.mode,
            o.rate(),
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3,
            o.errors,
            o.peak_rss_kib as f64 / 1024.0,
            o.cpu_per_request().as_secs_f64() * 1e6,
        );
    }
    // Ours against the peers, each with the same RS256 tokens over JWKS: with
    // a repeated token (our verified-token cache answers; the peers verify
    // every time) and with every token distinct (a full verification each).
    let rate_of = |mode: &str| outcomes.iter().find(|o| o.mode == mode).map(Outcome::rate);
    // The facade's own ES256 tokens (static key) against the RS256 tokens
    // of an external issuer (JWKS): the same verifier and cache; and the
    // same tokens DPoP-bound, each request with a proof to verify.
    let of = |mode: &str| outcomes.iter().find(|o| o.mode == mode);
    for (ours, theirs) in [
        ("facade", "oauth2"),
        ("facade-distinct", "oauth2-distinct"),
        ("oauth2-dpop", "oauth2"),
        ("oauth2-observed", "oauth2"),
        ("oauth2-metrics", "oauth2"),
        ("oauth2-audit", "oauth2"),
        ("oauth2-redis", "oauth2"),
        ("oauth2-stateless", "oauth2"),
    ] {
        if let (Some(a), Some(b)) = (of(ours), of(theirs)) {
            println!(
                "\n{ours} vs {theirs}: throughput {:.2}×, server CPU per call {:+.1} µs, p99 {:+.3} ms",
                a.rate() / b.rate().max(1e-9),
                (a.cpu_per_request().as_secs_f64() - b.cpu_per_request().as_secs_f64()) * 1e6,
                (a.p99.as_secs_f64() - b.p99.as_secs_f64()) * 1e3,
            );
        }
    }
    for ours in ["oauth2", "oauth2-distinct"] {
        let Some(rate) = rate_of(ours) else { continue };
        for peer in PEER_MODES {
            if let Some(theirs) = rate_of(peer).filter(|r| *r > 0.0) {
                println!("\n{ours} throughput vs {peer}: {:.1}×", rate / theirs);
            }
        }
    }
}

/// Prints the facade's token-endpoint steps.
pub(crate) fn token_endpoint(steps: &[StepOutcome], clients: usize) {
    println!("\nfacade token endpoint, {clients} concurrent clients:\n");
    println!("| store | step | count | per second | p50 | p99 | errors | server CPU per step |");
    println!("|---|---|---|---|---|---|---|---|");
    for s in steps {
        println!(
            "| {} | {} | {} | {:.0} | {:.3} ms | {:.3} ms | {} | {:.1} µs |",
            s.store,
            s.step,
            s.requests,
            s.rate(),
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.errors,
            s.cpu_per_request().as_secs_f64() * 1e6,
        );
    }
}

/// Prints the RSS measured with `n` idle sessions.
pub(crate) fn idle_memory(n: usize, m: &IdleMemory) {
    println!(
        "\nidle sessions: {} authenticated (oauth2) sessions: RSS {:.1} MiB (was {:.1} MiB with one session; {:.2} KiB per session); {:.1} MiB after ending them all (DELETE)",
        n,
        m.idle_kib as f64 / 1024.0,
        m.one_kib as f64 / 1024.0,
        m.idle_kib.saturating_sub(m.one_kib) as f64 / n as f64,
        m.ended_kib as f64 / 1024.0,
    );
    println!(
        "opening them took {:.1} s ({:.0} sessions/s); RSS peaked at {:.1} MiB meanwhile",
        m.open_time.as_secs_f64(),
        n as f64 / m.open_time.as_secs_f64().max(1e-3),
        m.peak_kib as f64 / 1024.0,
    );
    if let Some((kib, ok, sample)) = m.parked {
        println!(
            "parked: RSS {:.1} MiB once the idle sessions gave up their workers; {ok} of {sample} sampled sessions answered a call afterwards",
            kib as f64 / 1024.0,
        );
    }
}
