//! Generates Rust types from `proto/` with the vendored `protoc`, so no system
//! install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "clawhive/v1/bus.proto",
        "clawhive/v1/assistant.proto",
        "clawhive/v1/admin.proto",
        "clawhive/v1/schedules.proto",
    ];
    let paths: Vec<_> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("clawhive_descriptor.bin"))
        .compile_with_config(config, &paths, &[root])?;
    Ok(())
}
