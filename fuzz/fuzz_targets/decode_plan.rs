//! bytes -> plan decode (framing + full validation) -> every view -> the
//! pure inputs of the dry-run preflight -> re-encode and decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = ringplan_plan::decode_slice(data) else {
        return;
    };
    let _ = plan.to_text();
    let _ = plan.to_dot();
    let _ = plan.to_json();
    let _ = plan.needed_fds();
    let _ = plan.fd_limit_needed();
    let bytes = ringplan_plan::encode_to_vec(&plan).expect("a valid plan encodes");
    let decoded = ringplan_plan::decode_slice(&bytes).expect("a re-encoded valid plan decodes");
    assert_eq!(decoded, plan, "plan CBOR round trip changed the plan");
});
