//! The `cache` subcommand's clap definitions.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Upload the checkpoints of a target's last run (each file once, by sha256).
    Push {
        #[arg(long, short)]
        target: String,
    },
    /// Download the checkpoints of a target that the state directory lacks, each verified.
    Pull {
        #[arg(long, short)]
        target: String,
        /// Override a config variable of the target: --set arch=i686.
        #[arg(long = "set", value_name = "VAR=VALUE", value_parser = crate::assignment::parse)]
        overrides: Vec<(String, String)>,
    },
    /// List the cache's checkpoints.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Check every checkpoint's descriptor and signature and every file's sha256.
    Verify,
    /// Remove the checkpoints no target of the project references, then the files nothing names.
    Gc {
        /// Report what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make an ed25519 signing key; prints the public key for cache.yaml's trusted_keys.
    Keygen {
        /// Where to write the secret key (mode 0600); it must not exist.
        out: PathBuf,
    },
}
