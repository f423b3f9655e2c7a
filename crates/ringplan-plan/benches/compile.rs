//! How long `compile` takes for 10^4, 10^5 and 10^6 objects (64 rings
//! sharing one SQ thread, each with an eventfd, 4 buffers and a table of
//! distinct regular files, one in 16 still held at an fd), and how the time
//! grows per 10x objects. The target: 10^6 objects in at most 1 s, and at
//! most 11x the time for 10x the objects.
//!
//! Lines starting `TABLE|` are the summary that `scripts/bench` collects.
//!
//! `cargo bench -p ringplan-plan` runs criterion, then prints criterion's
//! median for each size with the time per object and the ratio per 10x.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use ringplan_image::Image;
use ringplan_plan::compile;

#[path = "../tests/scenarios.rs"]
mod scenarios;

const RINGS: u32 = 64;

/// An image of about `objects` objects: `RINGS` rings, each with an eventfd
/// and `objects / RINGS - 2` files.
fn image_of(objects: u32) -> Image {
    scenarios::wide(RINGS, objects / RINGS - 2)
}

/// Where criterion writes its results: `criterion/` in the target directory
/// this bench runs from (`TARGET/release/deps/compile-HASH`).
fn criterion_directory() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    target.join("criterion")
}

/// Criterion's median estimate, in seconds, for one benchmark.
fn criterion_median(directory: &Path, group: &str, id: &str) -> Option<f64> {
    let path = directory
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(estimates["median"]["point_estimate"].as_f64()? / 1e9)
}

fn main() {
    let test_mode = std::env::args().any(|argument| argument == "--test" || argument == "--list");
    let sizes: &[u32] = &[10_000, 100_000, 1_000_000];
    let images: Vec<(u32, Image)> = sizes
        .iter()
        .map(|&objects| (objects, image_of(objects)))
        .collect();

    let directory = criterion_directory();
    let mut criterion = Criterion::default()
        .output_directory(&directory)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("compile");
        for (objects, image) in &images {
            group.throughput(Throughput::Elements(image.objects.len() as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(objects),
                image,
                |bencher, image| {
                    // Freeing the plan is the caller's business, not compile's.
                    bencher.iter_with_large_drop(|| compile(black_box(image)))
                },
            );
        }
        group.finish();
    }
    criterion.final_summary();
    if test_mode {
        return;
    }

    println!();
    println!("compile, criterion medians ({RINGS} rings x N files):");
    let mut previous: Option<f64> = None;
    let mut summary = Vec::new();
    for (objects, image) in &images {
        let Some(seconds) = criterion_median(&directory, "compile", &objects.to_string()) else {
            println!("  {objects}: no estimate in {}", directory.display());
            continue;
        };
        let count = image.objects.len();
        let ratio = previous.map_or_else(String::new, |previous| {
            format!(", {:.2}x the time of 10x fewer objects", seconds / previous)
        });
        println!(
            "  {count:>9} objects: {:>9.2} ms ({:.0} ns per object){ratio}",
            seconds * 1e3,
            seconds * 1e9 / count as f64
        );
        let growth = previous.map(|previous| seconds / previous);
        summary.push((count, seconds, growth));
        previous = Some(seconds);
    }
    // The summary `scripts/bench` collects: no baseline here; the targets
    // are absolute: 10^6 objects in <= 1 s, and linear, taken as at most
    // 11x the time per 10x objects on average over the whole range (each
    // single step is shown too; one step alone moves with the load).
    let first = summary.first().map(|&(count, seconds, _)| (count, seconds));
    for &(count, seconds, growth) in &summary {
        let step = growth.map_or_else(String::new, |growth| format!("{growth:.2}x per 10x"));
        let (ratio, target, verdict) = match first {
            Some((first_count, first_seconds)) if count >= 1_000_000 && first_count < count => {
                let decades = (count as f64 / first_count as f64).log10();
                let average = (seconds / first_seconds).powf(1.0 / decades);
                let met = seconds <= 1.0 && average <= 11.0;
                (
                    format!("{step}; {average:.2}x per 10x on average from {first_count}"),
                    "<= 1 s; linear (<= 11x per 10x on average)",
                    if met { "met" } else { "missed" },
                )
            }
            _ => (step, "", ""),
        };
        println!(
            "TABLE|compile, {count} objects ({:.0} ns per object)|{:.2} ms||{ratio}|{target}|{verdict}",
            seconds * 1e9 / count as f64,
            seconds * 1e3
        );
    }
}
