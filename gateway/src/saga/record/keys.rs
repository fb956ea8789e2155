//! The form of the engine's `Idempotency-Key`s, as plain routes must recognise it (SPEC §3).

/// How every `Idempotency-Key` the engine sends begins; plain routes refuse client keys of this
/// form (SPEC §3).
pub const ENGINE_KEY_PREFIX: &str = "txgate-";

/// Whether an `Idempotency-Key` has the form of one the engine sends: `txgate-…`, or the first
/// encoding's `<saga id>.<step>.<phase>`, which sagas started before the secret keys still send.
pub fn is_engine_key(key: &[u8]) -> bool {
    let lower = key.to_ascii_lowercase();
    if lower.starts_with(ENGINE_KEY_PREFIX.as_bytes()) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(&lower) else {
        return false;
    };
    let phases = ["action", "compensate", "try", "confirm", "cancel"];
    match (text.split_once('.'), text.rsplit_once('.')) {
        (Some((id, _)), Some((_, phase))) => {
            uuid::Uuid::try_parse(id).is_ok() && phases.contains(&phase)
        }
        _ => false,
    }
}
