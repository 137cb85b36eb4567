//! Reports: the Markdown table of every mode against no-auth, our
//! throughput against the peers', the facade's and DPoP-bound tokens
//! against `oauth2`'s, the modes over several rounds, the facade's token
//! endpoint, and the idle-session memory line, printed to stdout.

use crate::{
    bodies::BodyRow,
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

/// The median, least and greatest of `values` (not empty).
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// One mode over the rounds: requests/s and server CPU per call (µs),
/// each as (median, min, max), and against the first mode of each round
/// (the throughput ratio and the CPU difference, paired within the round).
#[derive(Debug, PartialEq)]
pub(crate) struct RoundSummary {
    pub(crate) mode: String,
    pub(crate) rate: (f64, f64, f64),
    pub(crate) cpu_us: (f64, f64, f64),
    pub(crate) ratio: (f64, f64, f64),
    pub(crate) cpu_diff_us: (f64, f64, f64),
    /// Failed calls over all its rounds.
    pub(crate) errors: usize,
}

/// Summarizes `rounds` (each the same modes in the same order) per mode.
pub(crate) fn summarize(rounds: &[Vec<Outcome>]) -> Vec<RoundSummary> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    let cpu = |o: &Outcome| o.cpu_per_request().as_secs_f64() * 1e6;
    first
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let runs: Vec<(&Outcome, &Outcome)> = rounds
                .iter()
                .filter_map(|r| Some((r.get(i)?, r.first()?)))
                .collect();
            let mut rate: Vec<f64> = runs.iter().map(|(o, _)| o.rate()).collect();
            let mut cpus: Vec<f64> = runs.iter().map(|(o, _)| cpu(o)).collect();
            let mut ratio: Vec<f64> = runs
                .iter()
                .map(|(o, base)| o.rate() / base.rate().max(1e-9))
                .collect();
            let mut diff: Vec<f64> = runs.iter().map(|(o, base)| cpu(o) - cpu(base)).collect();
            RoundSummary {
                mode: o.mode.clone(),
                rate: spread(&mut rate),
                cpu_us: spread(&mut cpus),
                ratio: spread(&mut ratio),
                cpu_diff_us: spread(&mut diff),
                errors: runs.iter().map(|(o, _)| o.errors).sum(),
            }
        })
        .collect()
}

/// Prints the modes over `rounds`: medians (min-max), and each against the
/// first mode, paired round by round.
pub(crate) fn rounds(rounds: &[Vec<Outcome>]) {
    let summary = summarize(rounds);
    let Some(base) = summary.first().map(|s| s.mode.clone()) else {
        return;
    };
    println!(
        "{} rounds, medians (min-max); against {base} paired within each round:\n",
        rounds.len()
    );
    println!(
        "| mode | requests/s | server CPU per call | throughput vs {base} | server CPU per call vs {base} | errors |"
    );
    println!("|---|---|---|---|---|---|");
    for s in &summary {
        println!(
            "| {} | {:.0} ({:.0}-{:.0}) | {:.1} ({:.1}-{:.1}) µs | {:.3}× ({:.3}-{:.3}) | {:+.1} ({:+.1} to {:+.1}) µs | {} |",
            s.mode,
            s.rate.0,
            s.rate.1,
            s.rate.2,
            s.cpu_us.0,
            s.cpu_us.1,
            s.cpu_us.2,
            s.ratio.0,
            s.ratio.1,
            s.ratio.2,
            s.cpu_diff_us.0,
            s.cpu_diff_us.1,
            s.cpu_diff_us.2,
            s.errors,
        );
    }
    if summary.iter().any(|s| s.errors > 0) {
        println!("\nSome calls failed: the figures of those modes are not comparable.");
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

/// The rows of `--bodies`: what was sent, the answers, the memory.
pub(crate) fn bodies(rows: &[BodyRow]) {
    println!("\nlarge bodies (mode none, one session, each row a fresh server):\n");
    println!(
        "| bodies at once | body | bytes each | JSON values each | answered | RSS before | peak RSS | peak over before, per value |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    for r in rows {
        let statuses: Vec<String> = r.statuses.iter().map(u16::to_string).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.bodies,
            r.what,
            r.body_bytes,
            r.values,
            statuses.join(", "),
            mib(r.before_kib),
            mib(r.peak_kib),
            // A string's bytes, not its values, are what it costs.
            match r.values * r.bodies >= 100_000 {
                true => format!("{:.0} B", r.bytes_per_value()),
                false => "-".to_owned(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(mode: &str, requests: usize, cpu_ms: u64) -> Outcome {
        Outcome {
            mode: mode.into(),
            requests,
            errors: requests % 7,
            elapsed: Duration::from_secs(1),
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            peak_rss_kib: 0,
            server_cpu: Duration::from_millis(cpu_ms),
        }
    }

    #[test]
    fn rounds_are_paired_with_the_first_mode_of_the_same_round() {
        // The machine is twice as fast in round 2: paired, b is 0.9x of a
        // in every round; unpaired medians would mix the rounds.
        let rounds = vec![
            vec![run("a", 1000, 100), run("b", 900, 99)],
            vec![run("a", 2000, 100), run("b", 1800, 99)],
            vec![run("a", 1000, 100), run("b", 900, 99)],
        ];
        let s = summarize(&rounds);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].mode.as_str(), s[0].ratio), ("a", (1.0, 1.0, 1.0)));
        assert_eq!(s[1].mode, "b");
        assert_eq!(s[1].rate, (900.0, 900.0, 1800.0));
        // 900 % 7 = 4, 1800 % 7 = 1: every round's failures are counted.
        assert_eq!(s[1].errors, 4 + 1 + 4);
        let (median, min, max) = s[1].ratio;
        assert!(
            (median - 0.9).abs() < 1e-9 && (min - 0.9).abs() < 1e-9 && (max - 0.9).abs() < 1e-9
        );
        // CPU per call: a 100 then 50 us, b 110 then 55 us.
        let (median, min, max) = s[1].cpu_diff_us;
        assert!((median - 10.0).abs() < 1e-6, "{median}");
        assert!((min - 5.0).abs() < 1e-6 && (max - 10.0).abs() < 1e-6);
    }

    #[test]
    fn an_even_number_of_values_has_the_middle_two_for_median() {
        assert_eq!(spread(&mut [4.0, 1.0, 3.0, 2.0]), (2.5, 1.0, 4.0));
        assert_eq!(spread(&mut [7.0]), (7.0, 7.0, 7.0));
    }
}
