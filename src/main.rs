//! farm: one binary that replaces Docker on the machines of GPU compute farmers.

fn main() {
    println!("farm: not yet");
}
