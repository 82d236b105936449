// Records the target triple and profile so `build_info` can report exactly
// what was compiled; cargo only exposes these to build scripts.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=CLUSTER_SCOPE_TARGET={target}");
    println!("cargo:rustc-env=CLUSTER_SCOPE_PROFILE={profile}");
    println!("cargo:rerun-if-changed=build.rs");
}
