// The migrations are embedded by refinery's macro, which does not tell Cargo
// about the files it reads: without this, editing one would not rebuild.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
