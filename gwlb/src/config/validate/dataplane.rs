//! `[dataplane]`: worker and main CPUs, EAL memory and arguments, burst and table sizes.

use std::time::Duration;

use super::{invalid, ranged, Validator};
use crate::config::raw::RawDataplane;
use crate::config::{ConfigError, Dataplane};

/// Most workers: DPDK's default RTE_MAX_LCORE is 128, one of which is the main lcore.
const MAX_WORKERS: usize = 127;
/// Largest CPU id accepted (RTE_MAX_LCORE can be raised up to 1024 at DPDK build time).
const MAX_CPU: i64 = 1023;

/// EAL options that gwlb derives from other fields; passing them again would conflict.
const DERIVED_EAL_OPTIONS: &[&str] = &[
    "-l",
    "-c",
    "-m",
    "--lcores",
    "--main-lcore",
    "--master-lcore",
    "--no-huge",
];

fn derived_eal_option(arg: &str) -> Option<&'static str> {
    DERIVED_EAL_OPTIONS.iter().copied().find(|&opt| {
        if opt.starts_with("--") {
            arg == opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
        } else {
            // Short options may carry their value attached: `-l1-3`, `-m512`.
            arg.strip_prefix(opt)
                .is_some_and(|r| r.is_empty() || !r.starts_with(|c: char| c.is_ascii_alphabetic()))
        }
    })
}

pub(super) fn validate_dataplane(
    raw: &RawDataplane,
    v: &mut Validator,
) -> Result<Dataplane, ConfigError> {
    if raw.worker_cpus.is_empty() {
        return Err(invalid(
            "dataplane.worker_cpus",
            "at least one worker CPU is required",
        ));
    }
    if raw.worker_cpus.len() > MAX_WORKERS {
        return Err(invalid(
            "dataplane.worker_cpus",
            format!("{} workers; at most {MAX_WORKERS}", raw.worker_cpus.len()),
        ));
    }
    let mut worker_cpus = Vec::with_capacity(raw.worker_cpus.len());
    for (i, &cpu) in raw.worker_cpus.iter().enumerate() {
        let field = format!("dataplane.worker_cpus[{i}]");
        let cpu: u32 = ranged(&field, cpu, 0..=MAX_CPU)?;
        if worker_cpus.contains(&cpu) {
            return Err(invalid(field, format!("CPU {cpu} is listed twice")));
        }
        worker_cpus.push(cpu);
    }
    let main_cpu: u32 = ranged("dataplane.main_cpu", raw.main_cpu, 0..=MAX_CPU)?;
    if worker_cpus.contains(&main_cpu) {
        // Allowed (a 2-core machine can only run 2 workers this way), but the worker then
        // shares its CPU with the control plane's thread.
        v.warn(
            "dataplane.main_cpu",
            format!(
                "CPU {main_cpu} is also a worker CPU: the control plane shares it with a worker"
            ),
        );
    }
    for (i, arg) in raw.eal_args.iter().enumerate() {
        let field = format!("dataplane.eal_args[{i}]");
        if arg.is_empty() {
            return Err(invalid(field, "empty argument"));
        }
        if let Some(opt) = derived_eal_option(arg) {
            return Err(invalid(
                field,
                format!(
                    "{opt} is set by gwlb from dataplane.worker_cpus, main_cpu, hugepages and memory_mb"
                ),
            ));
        }
    }
    Ok(Dataplane {
        worker_cpus,
        main_cpu,
        hugepages: raw.hugepages,
        memory_mb: ranged("dataplane.memory_mb", raw.memory_mb, 64..=1 << 20)?,
        eal_args: raw.eal_args.clone(),
        burst_size: ranged("dataplane.burst_size", raw.burst_size, 1..=64)?,
        tx_flush: Duration::from_micros(ranged(
            "dataplane.tx_flush_us",
            raw.tx_flush_us,
            1..=10_000,
        )?),
        idle_sleep: match ranged::<u64>("dataplane.idle_sleep_us", raw.idle_sleep_us, 0..=10_000)? {
            0 => None,
            us => Some(Duration::from_micros(us)),
        },
        icmp_errors_per_s: ranged(
            "dataplane.icmp_errors_per_s",
            raw.icmp_errors_per_s,
            0..=1_000_000,
        )?,
        idle_after: Duration::from_micros(ranged(
            "dataplane.idle_after_us",
            raw.idle_after_us,
            0..=1_000_000,
        )?),
        mbufs_per_worker: ranged(
            "dataplane.mbufs_per_worker",
            raw.mbufs_per_worker,
            1024..=1 << 22,
        )?,
        mempool: raw.mempool,
        flow_table_capacity: ranged(
            "dataplane.flow_table_capacity",
            raw.flow_table_capacity,
            1024..=1 << 27,
        )?,
        flow_hash_seed: raw.flow_hash_seed.0,
        stats_interval: match ranged::<u64>(
            "dataplane.stats_interval_s",
            raw.stats_interval_s,
            0..=86_400,
        )? {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::*;
    use crate::config::Config;

    #[test]
    fn test_dataplane_rules() {
        expect_err(
            &with("[dataplane]\nworker_cpus = []"),
            "dataplane.worker_cpus",
            "at least one",
        );
        expect_err(
            &with("[dataplane]\nworker_cpus = [1, 2, 1]"),
            "dataplane.worker_cpus[2]",
            "twice",
        );
        expect_err(
            &with("[dataplane]\nworker_cpus = [-1]"),
            "dataplane.worker_cpus[0]",
            "out of range 0..=1023",
        );
        let shared = Config::from_toml_str(&with("[dataplane]\nmain_cpu = 1")).unwrap();
        assert!(shared
            .warnings()
            .iter()
            .any(|w| w.field == "dataplane.main_cpu"));
        expect_err(
            &with("[dataplane]\nburst_size = 65"),
            "dataplane.burst_size",
            "65 is out of range 1..=64",
        );
        expect_err(
            &with("[dataplane]\ntx_flush_us = 0"),
            "dataplane.tx_flush_us",
            "out of range 1..=10000",
        );
        expect_err(
            &with("[dataplane]\nflow_table_capacity = 1000"),
            "dataplane.flow_table_capacity",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\nmbufs_per_worker = 10"),
            "dataplane.mbufs_per_worker",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\nmempool = \"fifo\""),
            "dataplane.mempool",
            "unknown variant `fifo`, expected `stack` or `ring`",
        );
        let ring = Config::from_toml_str(&with("[dataplane]\nmempool = \"ring\"")).unwrap();
        assert_eq!(ring.dataplane.mempool.ops(), "ring_mp_mc");
        let default = Config::from_toml_str(&with("")).unwrap();
        assert_eq!(default.dataplane.mempool.ops(), "stack");
        expect_err(
            &with("[dataplane]\nmemory_mb = 1"),
            "dataplane.memory_mb",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\nstats_interval_s = -1"),
            "dataplane.stats_interval_s",
            "out of range",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"-l\", \"1-3\"]"),
            "dataplane.eal_args[0]",
            "-l is set by gwlb",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"--lcores=1@2\"]"),
            "dataplane.eal_args[0]",
            "--lcores",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"-m512\"]"),
            "dataplane.eal_args[0]",
            "-m is set",
        );
        expect_err(
            &with("[dataplane]\neal_args = [\"\"]"),
            "dataplane.eal_args[0]",
            "empty",
        );
        parse(&with("[dataplane]\neal_args = [\"--log-level=debug\", \"--socket-mem=512\", \"--iova-mode=va\"]"));
        let c = parse(&with(
            "[dataplane]\nflow_hash_seed = 12345\nstats_interval_s = 10",
        ));
        assert_eq!(c.dataplane.flow_hash_seed, 12345);
        assert_eq!(c.dataplane.stats_interval, Some(Duration::from_secs(10)));
    }
}
