//! Starting the real `vigil-agent` the way every agent test does: `run --config FILE`, logging at
//! `VIGIL_LOG` (default `info`, so tests can read its log lines), killed with its process group
//! when the guard drops.

use std::path::Path;
use std::process::Command;

use crate::{ChildGuard, workspace_bin};

/// `vigil-agent run --config CONFIG`; add environment (AWS stand-ins, keys, `VIGIL_LOG`) before
/// starting it with `ChildGuard::spawn("vigil-agent", cmd)`.
pub fn agent_command(config: &Path) -> Command {
    let mut cmd = Command::new(workspace_bin("vigil-agent"));
    cmd.args(["run", "--config"]).arg(config).env(
        "VIGIL_LOG",
        std::env::var("VIGIL_LOG").unwrap_or_else(|_| "info".into()),
    );
    cmd
}

/// Starts the agent on `config` with extra environment (moto's endpoint and credentials, ...).
pub fn start_agent(config: &Path, env: &[(String, String)]) -> ChildGuard {
    let mut cmd = agent_command(config);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    ChildGuard::spawn("vigil-agent", cmd).expect("start vigil-agent")
}
