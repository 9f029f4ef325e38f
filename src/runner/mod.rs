//! Runners execute one step in its environment. A new kind of runner (a VM,
//! a foreign architecture) is one new module implementing [`Runner`].

pub mod builddir;
pub mod cancel;
pub mod error;
pub mod group;
pub mod guest;
pub mod guest_job;
pub mod guest_sandbox;
pub mod host;
pub mod job;
pub mod kexec;
pub mod machine;
pub mod shell;
pub mod steplog;
pub mod tool;
pub mod vm;

pub use self::cancel::Cancel;
pub use self::job::{Earlier, Runner, StepJob, Variation};
use crate::error::Result;

/// The runners of a run, one per kind of stage.
pub struct Runners {
    pub host: host::HostRunner,
    pub vm: vm::VmRunner,
    /// Runs the `vm` stages instead of qemu when set (`run --guest sandbox`).
    pub guest_sandbox: Option<guest_sandbox::GuestSandboxRunner>,
}

impl Runners {
    pub fn for_kind(&mut self, kind: crate::target::RunnerKind) -> &mut dyn Runner {
        match (kind, &mut self.guest_sandbox) {
            (crate::target::RunnerKind::Host, _) => &mut self.host,
            (crate::target::RunnerKind::Vm, Some(sandboxed)) => sandboxed,
            (crate::target::RunnerKind::Vm, None) => &mut self.vm,
        }
    }

    pub fn run_complete(&mut self) -> Result<()> {
        self.host.run_complete()?;
        self.vm.run_complete()
    }
}
