//! Generates the kubelet device-plugin API (v1beta1) from our own `.proto` with a vendored
//! `protoc`, so the build needs nothing installed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/deviceplugin/v1beta1/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/deviceplugin/v1beta1/api.proto"], &["proto"])?;
    Ok(())
}
