//! The demo binary against the Azure emulator, as the seed's demo pod runs it: IMDS of a
//! scale-set instance that has the DEMO identity, ARM of the emulator. Every endpoint is the
//! emulator's loopback listener; nothing else is reachable.

use std::process::Command;

use podid_emulator::testing::{Emulator, SEED_WORLD};

const SUBSCRIPTION: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
const NODE_RG: &str = "Study4Dev-JE-AKS-Study4Dev-JE-AKSResource";
const DEMO_CLIENT: &str = "cb5569f2-8d09-4de1-a007-e02058e11d15";
const SCALE_SET: &str = "aks-agentpool-23456789-vmss";

/// The seed world with DEMO already on the scale set, as MIC leaves it once the pod is bound.
fn world_with_demo_assigned() -> String {
    let before = "userAssigned: [aks-study4dev-je-agentpool]";
    assert!(SEED_WORLD.contains(before), "the seed world changed shape");
    SEED_WORLD.replacen(
        before,
        "userAssigned: [aks-study4dev-je-agentpool, DEMO]",
        1,
    )
}

fn run_demo(emu: &Emulator, machine: &str, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args([
            &format!("--subscriptionid={SUBSCRIPTION}"),
            &format!("--resourcegroup={NODE_RG}"),
            "--rounds=1",
        ])
        .args(extra)
        .env("PODID_DEMO_IMDS_ENDPOINT", emu.imds_base(machine))
        .env("PODID_DEMO_ARM_ENDPOINT", emu.arm_base())
        .env("SSL_CERT_FILE", emu.ca_file())
        .env("MY_POD_NAME", "demo")
        .env("MY_POD_NAMESPACE", "default")
        .env("MY_POD_IP", "10.244.0.7")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .expect("the demo binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "demo failed:\n{text}");
    text
}

fn instance0(emu: &Emulator) -> String {
    emu.machines()
        .find(|m| m.starts_with(SCALE_SET) && m.ends_with("_0"))
        .unwrap_or_else(|| {
            panic!(
                "no IMDS for instance 0 among {:?}",
                emu.machines().collect::<Vec<_>>()
            )
        })
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_lists_the_scale_set_vms_with_the_pods_identity() {
    let emu = Emulator::start(&world_with_demo_assigned()).await;
    let machine = instance0(&emu);
    let out = tokio::task::block_in_place(|| {
        run_demo(&emu, &machine, &[&format!("--clientid={DEMO_CLIENT}")])
    });
    assert!(
        out.contains("starting demo pod default/demo 10.244.0.7"),
        "{out}"
    );
    assert!(
        out.contains("successfully made GET on instance metadata"),
        "{out}"
    );
    // The seed's node group holds one plain VM besides the scale set.
    assert!(out.contains("successfully counted VM from ARM: 1"), "{out}");
    assert!(out.contains("name=aks-standalone-vm"), "{out}");
    assert!(
        out.contains("successfully counted scale set VMs from ARM: 3"),
        "{out}"
    );
    for instance in 0..3 {
        assert!(
            out.contains(&format!("{SCALE_SET}/virtualMachines/{instance}")),
            "instance {instance} missing:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("ClientId(\"{DEMO_CLIENT}\")"))
            && out.contains("successfully acquired a token from IMDS"),
        "{out}"
    );
    // The token ARM saw was DEMO's: the list calls were made as DEMO (Reader on the group).
    let (_, ok) = emu.counter("arm.vm.list", 200).await;
    assert!(ok >= 1, "ARM saw no successful VM list");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_identity_on_the_node_the_demo_logs_imds_refusal_and_goes_on() {
    let emu = Emulator::start(SEED_WORLD).await;
    let machine = instance0(&emu);
    let out = tokio::task::block_in_place(|| {
        run_demo(&emu, &machine, &[&format!("--clientid={DEMO_CLIENT}")])
    });
    assert!(out.contains("failed list all vm"), "{out}");
    assert!(out.contains("failed to acquire a token from IMDS"), "{out}");
    emu.shutdown().await;
}
