//! The guardrail hook: a prompt is refused if it contains a phrase of the blocklist (one phrase a line,
//! case-insensitive, whole words; `#` starts a comment) or if an external command vetoes it. The command gets
//! the prompt on standard input and no shell; exit status 0 accepts, any other refuses with the first line of
//! its standard output as the reason; a command that does not answer within its time limit refuses.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, ServerError};

#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Lower-case phrases, each a list of words.
    phrases: Vec<Vec<String>>,
    command: Option<PathBuf>,
    timeout: Duration,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Guard {
    /// A guard with `blocklist` phrases (the file's text) and an optional veto `command`.
    pub fn new(blocklist: &str, command: Option<PathBuf>, timeout: Duration) -> Self {
        let phrases = blocklist
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .map(words)
            .filter(|w| !w.is_empty())
            .collect();
        Self {
            phrases,
            command,
            timeout,
        }
    }

    /// Reads the blocklist file.
    pub fn from_files(
        blocklist: Option<&Path>,
        command: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self> {
        let text = match blocklist {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                ServerError::io(format!("reading the blocklist {}", p.display()), e)
            })?,
            None => String::new(),
        };
        if let Some(c) = &command {
            if !c.is_file() {
                return Err(ServerError::Io(format!(
                    "guard command {}: no such file",
                    c.display()
                )));
            }
        }
        Ok(Self::new(&text, command, timeout))
    }

    /// Accepts `prompt` or says why not (blocking: it may run the command).
    pub fn check(&self, prompt: &str) -> Result<()> {
        let prompt_words = words(prompt);
        for phrase in &self.phrases {
            if prompt_words
                .windows(phrase.len())
                .any(|w| w == phrase.as_slice())
            {
                return Err(ServerError::BadRequest(format!(
                    "prompt refused: it contains the blocked phrase \"{}\"",
                    phrase.join(" ")
                )));
            }
        }
        match &self.command {
            Some(command) => self.ask(command, prompt),
            None => Ok(()),
        }
    }

    fn ask(&self, command: &Path, prompt: &str) -> Result<()> {
        let failed = |e: std::io::Error| {
            ServerError::Io(format!("guard command {}: {e}", command.display()))
        };
        let mut child = Command::new(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(failed)?;
        // A command that exits without reading its input closes the pipe: that is its answer, not an error.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(prompt.as_bytes());
        }
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(failed)? {
                break status;
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ServerError::BadRequest(format!(
                    "prompt refused: the guard command gave no answer within {:?}",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if status.success() {
            return Ok(());
        }
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.by_ref().take(4096).read_to_string(&mut out);
        }
        let reason = out.lines().next().unwrap_or("").trim();
        Err(ServerError::BadRequest(if reason.is_empty() {
            "prompt refused by the guard command".into()
        } else {
            format!("prompt refused: {reason}")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_phrases_match_whole_words_in_any_case() {
        let guard = Guard::new(
            "# comments and blank lines are skipped\n\nred ball\nexplosion # trailing comment\n",
            None,
            Duration::from_secs(1),
        );
        assert!(guard.check("A blue ball on a ramp.").is_ok());
        assert!(guard.check("The RED  ball falls.").is_err());
        assert!(
            guard.check("a red, ball").is_err(),
            "punctuation between words"
        );
        assert!(
            guard.check("an explosions show").is_ok(),
            "whole words only"
        );
        let err = guard.check("An explosion!").unwrap_err().to_string();
        assert!(err.contains("\"explosion\""), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_command_vetoes_with_its_reason_and_a_silent_command_times_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let veto = script(
            "veto.sh",
            "if grep -q cube; then echo 'no cubes here'; exit 1; fi; exit 0",
        );
        let guard = Guard::from_files(None, Some(veto), Duration::from_secs(10)).unwrap();
        assert!(guard.check("a ball").is_ok());
        let err = guard.check("a cube").unwrap_err().to_string();
        assert_eq!(err, "prompt refused: no cubes here");
        let slow = script("slow.sh", "sleep 5");
        let guard = Guard::from_files(None, Some(slow), Duration::from_millis(200)).unwrap();
        let err = guard.check("a ball").unwrap_err().to_string();
        assert!(err.contains("no answer"), "{err}");
        assert!(
            Guard::from_files(None, Some(dir.path().join("none")), Duration::from_secs(1)).is_err()
        );
    }
}
