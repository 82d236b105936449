use rustler::{Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        core_version,
        nif_version,
        target,
        profile,
        protocol_version,
    }
}

/// `build_info/0`: constants only, far below 1 ms.
#[rustler::nif]
fn build_info(env: Env<'_>) -> Term<'_> {
    let info = cluster_scope_core::build_info::build_info();
    let nif_version = format!(
        "{}.{}",
        rustler::sys::NIF_MAJOR_VERSION,
        rustler::sys::NIF_MINOR_VERSION
    );
    rustler::term_map!(env, {
        atoms::core_version() => info.core_version,
        atoms::nif_version() => nif_version,
        atoms::target() => info.target,
        atoms::profile() => info.profile,
        atoms::protocol_version() => info.protocol_version,
    })
    .encode(env)
}
