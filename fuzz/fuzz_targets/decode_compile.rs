//! bytes -> image decode (full validation) -> compile -> every view ->
//! plan encode -> plan decode (validation), asserting the round trip is
//! exact; plus the pure inputs of the dry-run preflight (`needed_fds`,
//! `fd_limit_needed`). Bytes that are not an image also go through
//! `plan_from_image_or_plan` (what `plan show` and the executor's
//! `load_plan` read), which covers its header sniffing and plan branch; for
//! an image it would only repeat decode + compile.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let image = match ringplan_image::decode_slice(data) {
        Ok(image) => image,
        Err(_) => {
            let _ = ringplan_plan::plan_from_image_or_plan(data);
            return;
        }
    };
    let Ok(plan) = ringplan_plan::compile(&image) else {
        return;
    };
    let _ = plan.to_text();
    let _ = plan.to_dot();
    let mut sink = Vec::new();
    plan.write_json(&mut sink, false)
        .expect("plan JSON serializes");
    let _ = plan.needed_fds();
    let _ = plan.fd_limit_needed();
    let bytes = ringplan_plan::encode_to_vec(&plan).expect("a compiled plan encodes");
    let decoded =
        ringplan_plan::decode_slice(&bytes).expect("a compiled plan decodes and validates");
    assert_eq!(decoded, plan, "plan CBOR round trip changed the plan");
});
