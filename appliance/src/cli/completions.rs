//! `roost completions <shell>` and `roost man`: shell completions and the man
//! page, generated from the same clap definition as the parser so they cannot
//! drift from it. `packaging/scripts/build-deb.sh` runs both to fill the .deb.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

/// Shells we generate completions for (the ones Debian packages ship
/// completion directories for).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// `/usr/share/bash-completion/completions/roost`
    Bash,
    /// `/usr/share/zsh/vendor-completions/_roost`
    Zsh,
    /// `/usr/share/fish/vendor_completions.d/roost.fish`
    Fish,
}

/// Arguments of `roost completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to print completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` to stdout.
pub fn run_completions(mut command: clap::Command, args: CompletionsArgs) -> Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "roost", &mut out);
    write_stdout(&out)
}

/// Prints the man page (roff, section 1) to stdout: synopsis, global options
/// and the list of subcommands from the `--help` texts, then where the rest is.
pub fn run_man(command: clap::Command) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command).render(&mut out).context("cannot render the man page")?;
    out.extend_from_slice(MAN_FILES_AND_SEE_ALSO.as_bytes());
    write_stdout(&out)
}

/// Written by hand: where the packaged files live, which clap cannot know.
const MAN_FILES_AND_SEE_ALSO: &str = r#".SH FILES
.TP
\fI/etc/roost/roost.toml\fR
Configuration of the packaged service; every option is documented in
/usr/share/doc/roost/examples/roost.toml.
.TP
\fI/var/lib/roost\fR
Data directory of the packaged service (database, blobs, device key). Run
admin commands as its owner: \fBsudo -u roost roost user add NAME\fR.
.SH SEE ALSO
\fBroost COMMAND --help\fR for the options of each command,
\fBroost doctor\fR to check a device,
/usr/share/doc/roost/ for installation, phone setup and adding a second location.
"#;

fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
